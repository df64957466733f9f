"""fdrl_export: the estimator and its exact input gradient as ONNX, TensorRT or torch.export."""
__version__ = "0.1.0"
