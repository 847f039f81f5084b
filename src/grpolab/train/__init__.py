"""What a training process builds and runs: models, data, interrupts, trackers, the step recorder."""
