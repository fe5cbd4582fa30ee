"""Teacher training (single process or ``torchrun`` + TorchRec DMP), checkpoints and soft scores."""
