"""fdrl_runtime: the lean FDRL sampler. Imports no torch unless the torch backend is chosen.

    import fdrl_runtime
    sampler = fdrl_runtime.load("model.onnx")
    x = sampler.sample(1000, seed=0)

(api.py; fdrl-infer is a shell over it.)
"""
__version__ = "0.1.0"

from .api import NonFiniteSamples, Sampler, load  # noqa: E402

__all__ = ["load", "Sampler", "NonFiniteSamples", "__version__"]
