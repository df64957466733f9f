"""Mixed precision on a GPU, checked on the CPU: an emulation of CUDA autocast's cast policy.

CUDA autocast casts a listed set of ops (convolution, mm, bmm, ...) to bf16 and leaves the
rest alone. A non-pointwise op that then meets bf16 and fp32 tensors together is what
cuDNN refuses ("Input type (CUDABFloat16Type) and weight type (torch.cuda.FloatTensor)
should be the same": aten.convolution_backward), while the CPU kernels accept the mix, and
CPU autocast has another op list. So the flow's graphs are run here under a dispatch mode
that casts as CUDA autocast does and records every such meeting.
"""
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from fdrl_train.config import validate
from fdrl_train.flow import GraphFlow
from fdrl_train.losses import get_pairing
from fdrl_train.models import build_model, plain_params
from fdrl_train.train import flow_drift_graph

aten = torch.ops.aten
# CUDA autocast's lower-precision list (aten/src/ATen/autocast_mode.cpp), the ops a traced graph can hold.
CUDA_LOWER = {aten.convolution, aten._convolution, aten.conv2d, aten.conv_transpose2d, aten.mm, aten.addmm,
              aten.bmm, aten.baddbmm, aten.matmul, aten.linear, aten.mv, aten.addmv, aten.dot}


class CudaAutocastEmulation(TorchDispatchMode):
    """Casts the inputs of CUDA_LOWER ops to bf16; records any other non-pointwise op whose
    floating tensor inputs have more than one dtype."""

    def __init__(self):
        super().__init__()
        self.mixed, self.cast = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in CUDA_LOWER:
            self.cast += 1
            to_bf16 = lambda a: a.to(torch.bfloat16) if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a  # noqa: E731
            args, kwargs = tree_map(to_bf16, args), tree_map(to_bf16, kwargs)
        elif torch.Tag.pointwise not in func.tags:
            dtypes = {a.dtype for a in tree_flatten((args, kwargs))[0]
                      if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dim() > 0}
            if len(dtypes) > 1:
                self.mixed.append(f"{func}: {sorted(map(str, dtypes))}")
                # recorded; go on in fp32 (some CPU kernels refuse the mix as cuDNN does)
                to_fp32 = lambda a: a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a  # noqa: E731
                args, kwargs = tree_map(to_fp32, args), tree_map(to_fp32, kwargs)
        return func(*args, **kwargs)


def amp_cfg(**extra):
    return validate({"model": "resnet8", "dataset": "digits", "spectral_norm": True, "self_attn": True,
                     "loss": "LR", "divergence": "KL", "amp": "bf16", "flow_steps": 3, "eta": 0.5, "noise": 0.05,
                     **extra})


def run_flow_emulated(cfg):
    shape = (1, 8, 8)
    torch.manual_seed(0)
    model = build_model(cfg, shape)
    _, divergence = get_pairing(cfg["loss"], cfg["divergence"])
    graph = flow_drift_graph(cfg, shape, divergence)
    weights = graph.weights({k: v.detach() for k, v in plain_params(model).items()})
    x0 = torch.rand(4, *shape) * 2 - 1
    mode = CudaAutocastEmulation()
    with mode:
        x = GraphFlow(graph, cfg["eta"], cfg["noise"])(weights, x0, cfg["flow_steps"], torch.Generator().manual_seed(1))
    return mode, x


def test_amp_training_flow_meets_no_mixed_dtype_op():
    """The graph fdrl-train's flow runs under amp=bf16 (self-attention included: bmm and
    softmax backward) holds no op that CUDA autocast would leave with mixed dtypes."""
    mode, x = run_flow_emulated(amp_cfg())
    assert mode.cast > 0  # the emulation cast the convolutions and matmuls
    assert mode.mixed == [], mode.mixed[:5]
    assert x.dtype == torch.float32 and torch.isfinite(x).all()  # the update stays fp32


def test_plain_graph_under_amp_is_what_cudnn_refuses():
    """The emulation sees the GPU failure: the plain graph (amp=none's) under autocast
    hands convolution_backward bf16 activations with fp32 weights."""
    mode, _ = run_flow_emulated(amp_cfg(amp="none"))
    assert any("convolution_backward" in m for m in mode.mixed), mode.mixed


def test_spectral_norm_power_iteration_runs_outside_autocast(monkeypatch):
    """Under autocast, SN's power iteration and sigma run in fp32 (CUDA autocast would run
    its `mv` in bf16)."""
    seen = []
    real_mv = torch.mv

    def spy(*a, **kw):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real_mv(*a, **kw)

    monkeypatch.setattr(torch, "mv", spy)
    model = build_model(amp_cfg(), (1, 8, 8)).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.rand(2, 1, 8, 8))
    assert seen and not any(seen), seen
