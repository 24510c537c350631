"""Networks, training, ONNX export, the model registry and runtime sessions (``radqc.models``)."""
