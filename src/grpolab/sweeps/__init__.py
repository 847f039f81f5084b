"""Sweeps: the local and Slurm launchers and the sweep report."""
