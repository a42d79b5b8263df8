"""Training-curve handler: the one in the region bundle (both bundles live in this repository)."""

from train.aspects_regions.scripts.curves import TrainingCurves

__all__ = ["TrainingCurves"]
