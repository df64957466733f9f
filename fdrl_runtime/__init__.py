"""fdrl_runtime: the lean FDRL sampler. Imports no torch unless the torch backend is chosen."""
__version__ = "0.1.0"
