"""The run directory as an artifact: run.json, checkpoints, metrics, the card, rollouts, publishing."""
