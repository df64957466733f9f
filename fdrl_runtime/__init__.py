"""fdrl_runtime: the lean FDRL sampler. Imports no torch unless the torch backend is chosen.

    import fdrl_runtime
    sampler = fdrl_runtime.load("model.onnx")
    x = sampler.sample(1000, seed=0)

(api.py; fdrl-infer is a shell over it.)
"""
from fdrl_core import __version__  # noqa: E402, F401  (one version for every package)

from .api import NonFiniteSamples, Sampler, load  # noqa: E402

__all__ = ["load", "Sampler", "NonFiniteSamples", "__version__"]
