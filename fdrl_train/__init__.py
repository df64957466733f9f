"""fdrl_train: FDRL training in PyTorch (models, losses, priors, flow, datasets, loop)."""
from fdrl_core import __version__  # noqa: F401  (one version for every package)
