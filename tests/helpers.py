"""Small checkpoints built from random weights, in this project's format."""
import torch

from fdrl_train.checkpoint import checkpoint_dict
from fdrl_train.config import validate
from fdrl_train.models import build_model

SHAPES = {"mlp": (2,), "resnet8": (1, 8, 8), "resnet28": (1, 28, 28), "resnet32": (3, 32, 32),
          "resnet64": (3, 64, 64), "resnet64_shallow": (3, 64, 64), "resnet128": (3, 128, 128)}


def random_checkpoint(model="mlp", loss="LSIF", divergence="Pearson", sn=False, attn=False, seed=0,
                      prior=None, **cfg_extra):
    cfg = validate({"model": model, "loss": loss, "divergence": divergence, "spectral_norm": sn,
                    "self_attn": attn, "flow_steps": 20, "refine_steps": 5, "eta": 0.5, "noise": 0.05,
                    "dataset": "swissroll" if model == "mlp" else "digits", **cfg_extra})
    shape = SHAPES[model]
    torch.manual_seed(seed)
    m = build_model(cfg, shape)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)  # a live attention branch
        if sn:
            m.train()
            for _ in range(2):
                m(torch.randn(2, *shape))
    image = len(shape) == 3
    ema = {k: v.clone() + (0.01 * torch.randn_like(v) if v.is_floating_point() and "weight_" not in k else 0)
           for k, v in m.state_dict().items()}
    if prior is None:
        prior = ({"kind": "up", "shape": list(shape), "clamp": True} if image
                 else {"kind": "normal", "shape": list(shape), "clamp": False, "std": 1.0})
    return checkpoint_dict(cfg, m.state_dict(), ema, prior, shape, (-1.0, 1.0) if image else None, 7,
                           source={"kind": "test"})
