"""Networks (torch): architectures and their registry, augmentation, batch prediction, checkpoints."""
