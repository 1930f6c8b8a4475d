"""Training: recipes, data pipeline, optimiser and schedule, checkpoints, the accelerate/DeepSpeed loop."""
from .recipe import Recipe, load_recipe
from .trainer import TrainResult, train

__all__ = ["Recipe", "TrainResult", "load_recipe", "train"]
