"""Torch reference models, datasets, training and ONNX export with model cards (offline only)."""
