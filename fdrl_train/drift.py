"""The drift grad_x f'(D(x)), derived from the model and traced once into an aten graph.

`DriftGraph` traces `x -> (grad_x f'(D(x)), D(x))` with torch.func (vjp over
functional_call) and make_fx, weights as graph inputs, so one trace serves every weight
update of training and every export. The chain rule is split as
grad_x f'(D(x)) = f''(D(x)) * grad_x D(x): autodiff derives grad_x D, and f'' is the
closed form of losses.Divergence (this keeps log-sigmoid backward out of the graph).

With `portable=True` the backward ops that have no ONNX translation (or a slow one) are
decomposed while tracing (shared/DESIGN.md §5):
- convolution_backward (grad-input only) -> a convolution with flipped, transposed
  weights for stride 1; a transposed convolution otherwise;
- leaky_relu_backward -> grad * clamp(x * 1e30, slope, 1): the slope mask in two cheap
  ops instead of ONNX Runtime's slow `Where` (ORT CPU, MNIST ResNet: 97 ms -> 53 ms per
  step; benchmarks/NOTES.md), its x being the activation's output (mask_from_activation_outputs),
  so ORT fuses the Gemm or convolution before each activation;
- _softmax_backward_data -> y * (g - sum(g * y)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call, vjp
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import (
    DimDynamic,
    ShapeEnv,
    StatelessSymbolicContext,
)

from .losses import Divergence

aten = torch.ops.aten


def _conv_grad_input(grad, inp, weight, bias_sizes, stride, padding, dilation, transposed,
                     output_padding, groups, output_mask):
    if transposed or groups != 1 or any(int(d) != 1 for d in dilation) or output_mask[1] or output_mask[2]:
        raise NotImplementedError("portable drift graphs support plain convolutions "
                                  "(no groups, dilation or transposition), input gradient only")
    k = [int(s) for s in weight.shape[2:]]
    stride = [int(s) for s in stride]
    padding = [int(p) for p in padding]
    ones = [1] * len(k)
    if all(s == 1 for s in stride):
        w = weight.flip(list(range(2, weight.dim()))).transpose(0, 1)
        gin = aten.convolution.default(grad, w, None, ones, [k[i] - 1 - padding[i] for i in range(len(k))],
                                       ones, False, [0] * len(k), 1)
    else:
        size = [int(s) for s in inp.shape[2:]]
        out = [(size[i] + 2 * padding[i] - k[i]) // stride[i] + 1 for i in range(len(k))]
        extra = [size[i] - ((out[i] - 1) * stride[i] - 2 * padding[i] + k[i]) for i in range(len(k))]
        gin = aten.convolution.default(grad, weight, None, stride, padding, ones, True, extra, 1)
    return gin, None, None


MASK_GAIN = 1e30  # x * gain is beyond [slope, 1] unless |x| < 1e-30: the mask is exact.


def _leaky_relu_grad(grad, x, slope, self_is_result):
    # x may be the activation's output (self_is_result): its sign is the input's. x = 0
    # gives the slope, as aten's leaky_relu_backward does.
    return grad * torch.clamp(x * MASK_GAIN, slope, 1.0)


def _softmax_grad(grad, y, dim, input_dtype):
    return y * (grad - (grad * y).sum(dim, keepdim=True))


def _log_softmax_grad(grad, y, dim, input_dtype):
    return grad - torch.exp(y) * grad.sum(dim, keepdim=True)


def mask_from_activation_outputs(gm: torch.fx.GraphModule) -> int:
    """Point each slope mask (clamp(a * MASK_GAIN, slope, 1)) at leaky_relu(a) instead of a.

    The mask is the same (slope > 0: the output has the input's sign, and 0 stays 0), but the
    convolution or Gemm before the activation then has one consumer, so ONNX Runtime fuses
    the pair (FusedConv / FusedGemm) and skips one pass over the activation. Returns how
    many masks were moved."""
    moved = 0
    for node in gm.graph.nodes:
        if node.target is not aten.mul.Tensor or len(node.args) != 2 or node.args[1] != MASK_GAIN:
            continue
        a = node.args[0]
        acts = [u for u in getattr(a, "users", ()) if u.target is aten.leaky_relu.default
                and u.args[0] is a and len(u.args) > 1 and float(u.args[1]) > 0]
        if acts:
            node.replace_input_with(a, acts[0])
            moved += 1
    if moved:
        gm.graph.lint()
        gm.recompile()
    return moved


PORTABLE_DECOMPOSITIONS = {
    aten.convolution_backward.default: _conv_grad_input,
    aten.leaky_relu_backward.default: _leaky_relu_grad,
    aten._softmax_backward_data.default: _softmax_grad,
    aten._log_softmax_backward_data.default: _log_softmax_grad,
}


@dataclass(frozen=True)
class Composition:
    """Class-conditional flow (paper eq. 12): r(x|y) = r(x) / (N p(y|x))^phi, with p(y|x) a
    classifier's softmax over N classes; phi scales the classifier's pull (0.1 in the paper)."""
    classifier: nn.Module   # spectral-norm-free, x -> [B, N] logits
    n_classes: int
    phi: float
    output: str             # the estimator's output: "r" or "log_r"

    def score(self, out: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_py = torch.log_softmax(logits, 1).gather(1, y[:, None])[:, 0]
        shift = self.phi * (math.log(self.n_classes) + log_py)
        return out - shift if self.output == "log_r" else out * torch.exp(-shift)


class DriftGraph:
    """(weights, x[, y]) -> (drift, score) for one architecture, divergence and sample shape.

    `template` is a spectral-norm-free model (see models.plain_twin); its parameters'
    names are the graph's weight inputs, in `self.names` order. With a `composition`,
    the classifier's parameters follow (names prefixed "classifier.") and the graph takes
    integer labels y [B]; score is then the conditional r(x|y) or log r(x|y). The graph
    runs in the dtype it was traced in.
    """

    def __init__(self, template: nn.Module, divergence: Divergence, sample_shape: tuple[int, ...],
                 portable: bool = False, dtype: torch.dtype = torch.float32, composition: Composition | None = None):
        self.names = [n for n, _ in template.named_parameters()]
        n_model = len(self.names)
        if composition is not None:
            self.names += ["classifier." + n for n, _ in composition.classifier.named_parameters()]
        self.sample_shape = tuple(sample_shape)
        self.divergence, self.composition = divergence, composition
        names, f_prime_grad = self.names, divergence.f_prime_grad

        def score_fn(weights, y):
            params = dict(zip(names[:n_model], weights[:n_model]))
            if composition is None:
                return lambda x_: functional_call(template, params, (x_,))
            cls_params = {n[len("classifier."):]: w for n, w in zip(names[n_model:], weights[n_model:])}
            return lambda x_: composition.score(functional_call(template, params, (x_,)),
                                                functional_call(composition.classifier, cls_params, (x_,)), y)

        def drift(weights, x, *y):
            out, pullback = vjp(score_fn(weights, y[0] if y else None), x)
            (g,) = pullback(f_prime_grad(out))
            return g, out

        # Only the batch is symbolic: weight and sample shapes are fixed by the model. The
        # trace also fixes the dtype of the constants it creates (masks, f'' fills).
        fake_mode = FakeTensorMode(shape_env=ShapeEnv())

        def fake(shape, dynamic_batch=False):
            dims = [DimDynamic.DYNAMIC if i == 0 and dynamic_batch else DimDynamic.STATIC for i in range(len(shape))]
            return fake_mode.from_tensor(torch.empty(shape, dtype=dtype),
                                         symbolic_context=StatelessSymbolicContext(dynamic_sizes=dims))

        params = list(template.named_parameters())
        if composition is not None:
            params += list(composition.classifier.named_parameters())
        example_w = [fake(p.shape) for _, p in params]
        example_x = fake((3, *self.sample_shape), dynamic_batch=True)  # 3: not specialised like 0 or 1
        inputs = (example_w, example_x)
        if composition is not None:
            y = fake_mode.from_tensor(torch.zeros(3, dtype=torch.int64), symbolic_context=StatelessSymbolicContext(
                dynamic_sizes=[DimDynamic.DYNAMIC]))
            inputs += (y,)
        self.graph = make_fx(drift, tracing_mode="symbolic",
                             decomposition_table=PORTABLE_DECOMPOSITIONS if portable else {})(*inputs)
        if portable:
            mask_from_activation_outputs(self.graph)

    def weights(self, params: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"weights missing for the drift graph: {', '.join(missing[:5])}")
        return [params[n] for n in self.names]

    def __call__(self, weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor | None = None):
        return self.graph(weights, x) if y is None else self.graph(weights, x, y)
