"""The parent process: one Hydra job becomes one run directory; torchrun workers; resume."""
