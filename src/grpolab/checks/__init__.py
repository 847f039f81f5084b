"""Checks before a run spends compute: the memory plan and the reward preflight."""
