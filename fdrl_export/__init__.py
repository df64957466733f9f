"""fdrl_export: the estimator and its exact input gradient as ONNX, TensorRT or torch.export."""
from fdrl_core import __version__  # noqa: F401  (one version for every package)
