"""CT organ segmentation (slot ``ct_organs``): data, network, training, ONNX export, inference."""
