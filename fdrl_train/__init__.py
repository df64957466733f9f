"""fdrl_train: FDRL training in PyTorch (models, losses, priors, flow, datasets, loop)."""
__version__ = "0.1.0"
