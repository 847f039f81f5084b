"""Evaluation during training and on its own (eval_only)."""
