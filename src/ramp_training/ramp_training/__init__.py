"""Torch reference models, datasets, training and ONNX export with model cards (offline only)."""

__version__ = "0.1.0"
