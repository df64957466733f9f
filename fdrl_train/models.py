"""Density-ratio estimators: the toy MLP and the paper's ResNets (Table 4).

State-dict names follow the reference implementation (shared/DESIGN.md §2) so that its
checkpoints load unchanged. Every model maps x to one number per sample, shape [B].
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm as _spectral_norm
from torch.nn.utils.spectral_norm import SpectralNorm

from .config import ConfigError

SLOPE = 0.2  # LeakyReLU slope used everywhere in the paper.

# (planes, blocks, stride of the first block) per stage; `attn` = the stage after which
# SAGAN self-attention sits when enabled (1-based), at that stage's width.
RESNETS = {
    "resnet8": dict(stem=32, stages=[(32, 1, 1), (64, 1, 2)], attn=1),
    "resnet28": dict(stem=32, stages=[(32, 1, 1), (64, 1, 2), (64, 1, 2)], attn=1),
    "resnet32": dict(stem=128, stages=[(128, 3, 1), (256, 3, 2), (256, 3, 2), (256, 3, 2)], attn=1),
    "resnet64": dict(stem=64, stages=[(64, 1, 2), (128, 2, 2), (256, 2, 2), (256, 2, 2)], attn=2),
    "resnet64_shallow": dict(stem=64, stages=[(64, 1, 2), (128, 1, 2), (128, 1, 2), (256, 1, 2)], attn=2),
    "resnet128": dict(stem=64, stages=[(64, 1, 2), (128, 1, 2), (128, 2, 2), (256, 2, 2), (256, 2, 2)], attn=2),
}


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int = 64, n_hidden_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.LeakyReLU(SLOPE)]
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(SLOPE)]
        layers.append(nn.Linear(hidden_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        return self.mlp(x).squeeze(-1)


class SelfAttention(nn.Module):
    """SAGAN self-attention: 1x1 convs to C/8, softmax over key positions, gamma = 0 at start."""

    def __init__(self, channels: int, k: int = 8):
        super().__init__()
        c = max(channels // k, 1)
        self.key = nn.Conv2d(channels, c, 1)
        self.query = nn.Conv2d(channels, c, 1)
        self.value = nn.Conv2d(channels, c, 1)
        self.self_att = nn.Conv2d(c, channels, 1)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        b, c, h, w = x.shape
        n = h * w
        keys = self.key(x).reshape(b, -1, n)
        queries = self.query(x).reshape(b, -1, n)
        values = self.value(x).reshape(b, -1, n)
        attn = torch.softmax(torch.bmm(keys.transpose(1, 2), queries), dim=1)  # [B, N_key, N_query]
        out = torch.bmm(values, attn).reshape(b, -1, h, w)
        return self.gamma * self.self_att(out) + x


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut_conv = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                              if stride != 1 or in_planes != planes else nn.Identity())

    def forward(self, x):
        out = self.conv2(F.leaky_relu(self.conv1(x), SLOPE))
        return F.leaky_relu(out + self.shortcut_conv(x), SLOPE)


class ResNet(nn.Module):
    """The paper's ResNets; n_out = 1 gives the estimator ([B]), more a classifier ([B, n_out])."""

    def __init__(self, in_channels: int, stem: int, stages, attn: int, self_attn: bool = False, n_out: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.attn_after = attn if self_attn else None
        planes_in = stem
        for i, (planes, blocks, stride) in enumerate(stages, start=1):
            layer = []
            for j in range(blocks):
                layer.append(BasicBlock(planes_in, planes, stride if j == 0 else 1))
                planes_in = planes
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            if self.attn_after == i:
                self.self_attn_module = SelfAttention(planes)
        self.n_stages = len(stages)
        self.linear = nn.Linear(planes_in, n_out)

    def forward(self, x):
        out = F.leaky_relu(self.conv1(x), SLOPE)
        for i in range(1, self.n_stages + 1):
            out = getattr(self, f"layer{i}")(out)
            if self.attn_after == i:
                out = self.self_attn_module(out)
        out = self.linear(out.mean((2, 3)))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def build_model(cfg: dict, sample_shape: tuple[int, ...]) -> nn.Module:
    """The estimator named by cfg['model'] for samples of `sample_shape` (no batch dim)."""
    name = cfg["model"]
    if name == "mlp":
        if len(sample_shape) != 1:
            raise ConfigError(f"config key 'model': 'mlp' takes flat samples; dataset gives shape {sample_shape}: use a resnet")
        model = MLP(sample_shape[0], cfg["hidden_dim"], cfg["n_hidden_layers"])
    else:
        if len(sample_shape) != 3:
            raise ConfigError(f"config key 'model': '{name}' takes images; dataset gives shape {sample_shape}: use model=mlp")
        model = ResNet(sample_shape[0], self_attn=cfg["self_attn"], **RESNETS[name])
    if cfg["spectral_norm"]:
        for m in list(model.modules()):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _spectral_norm(m)
                _sn_hook(m).__class__ = FP32SpectralNorm
        converge_spectral_norm(model)
    return model


class FP32SpectralNorm(SpectralNorm):
    """torch's spectral norm with its power iteration and sigma outside autocast: under CUDA
    autocast `mv` runs in bf16 and sigma (3 significant digits) would scale every weight by
    its rounding error; the iteration is a few matrix-vector products, fp32 costs nothing.
    (Installed by changing the hook's class, so state-dict hooks and isinstance checks hold.)"""

    def compute_weight(self, module, do_power_iteration):
        weight = getattr(module, self.name + "_orig")
        with torch.autocast(weight.device.type, enabled=False):
            return super().compute_weight(module, do_power_iteration)


def converge_spectral_norm(model: nn.Module) -> None:
    """Set every spectral-norm u, v to the weight's exact top singular vectors.

    torch's spectral_norm draws u and v at random and only starts iterating in the first
    training forward, so before it u.W.v is a random number near 0: the eval-mode model
    and any weights folded from it are ~1/0 (NaN samples, a non-finite loss at step 1).
    The reference code never hits this because its flow calls the model in train mode (one
    power iteration per call). Starting from the converged vectors makes the model right
    from step 0; each training forward then runs torch's one power iteration as usual.
    """
    with torch.no_grad():
        for module in model.modules():
            hook = _sn_hook(module)
            if hook is None:
                continue
            mat = hook.reshape_weight_to_matrix(getattr(module, hook.name + "_orig"))
            u, _, vh = torch.linalg.svd(mat.double(), full_matrices=False)
            getattr(module, hook.name + "_u").copy_(u[:, 0])
            getattr(module, hook.name + "_v").copy_(vh[0])


def _sn_hook(module: nn.Module) -> SpectralNorm | None:
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm):
            return hook
    return None


def spectral_sigma(weight_orig: torch.Tensor, u: torch.Tensor | None = None, v: torch.Tensor | None = None) -> torch.Tensor:
    """The spectral-norm divisor of a Conv2d/Linear weight (torch's dim 0 layout): u.W.v from
    the stored power-iteration vectors, or, without them, W's exact largest singular value."""
    mat = weight_orig.reshape(weight_orig.shape[0], -1)
    if u is None:
        return torch.linalg.matrix_norm(mat.double(), ord=2).to(mat.dtype)
    return torch.dot(u, torch.mv(mat, v))


def fold_spectral_norm(state: dict[str, torch.Tensor], sigma: str = "stored") -> dict[str, torch.Tensor]:
    """The weights of a state dict as a plain (spectral-norm-free) model takes them.

    Each `X.weight_orig` (with `X.weight_u`, `X.weight_v`) becomes `X.weight` =
    weight_orig / sigma. sigma="stored" uses u.W.v from the stored vectors: what the live
    model computes, cheap enough for every training step. sigma="exact" uses the exact
    largest singular value: the converged power iteration, for what is exported and for
    EMA weights, whose averaged u, v belong to no one weight. A pure function of `state`.
    """
    if sigma not in ("stored", "exact"):
        raise ValueError(f"sigma must be 'stored' or 'exact', not {sigma!r}")
    out = {}
    for name, value in state.items():
        if name.endswith("_orig") and name[:-5] + "_u" in state:
            base = name[:-5]
            with torch.no_grad():
                s = (spectral_sigma(value) if sigma == "exact"
                     else spectral_sigma(value, state[base + "_u"], state[base + "_v"]))
                out[base] = value / s
        elif not ((name.endswith("_u") or name.endswith("_v")) and name[:-2] + "_orig" in state):
            out[name] = value
    return out


def plain_params(model: nn.Module, sigma: str = "stored") -> dict[str, torch.Tensor]:
    """The weights as a plain (spectral-norm-free) model of the same architecture sees them
    (fold_spectral_norm of the model's state, no power iteration)."""
    return fold_spectral_norm(dict(model.state_dict(keep_vars=True)), sigma)


def plain_twin(cfg: dict, sample_shape: tuple[int, ...]) -> nn.Module:
    """The same architecture without spectral norm, on the meta device: a template for
    torch.func.functional_call over `plain_params`."""
    with torch.device("meta"):
        return build_model({**cfg, "spectral_norm": False}, sample_shape)

