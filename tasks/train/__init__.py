"""The train stage: `train_adapter` fine-tunes the catalog model on the examples (see `recipe`)."""

from tasks.train.recipe import TrainingDataError, TrainingDeviceError, train_adapter

__all__ = ["TrainingDataError", "TrainingDeviceError", "train_adapter"]
