"""Config schemas (Hydra ConfigStore), the generated trainer schema and its generator, validation."""
