"""Camera ingestion and the ONNX/TensorRT world-model encoder; owner of the model-card contract."""
