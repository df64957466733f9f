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
  step; benchmarks/NOTES.md);
- _softmax_backward_data -> y * (g - sum(g * y)).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.func import functional_call, vjp
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

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


PORTABLE_DECOMPOSITIONS = {
    aten.convolution_backward.default: _conv_grad_input,
    aten.leaky_relu_backward.default: _leaky_relu_grad,
    aten._softmax_backward_data.default: _softmax_grad,
}


class DriftGraph:
    """(weights, x) -> (drift, D(x)) for one architecture, divergence and sample shape.

    `template` is a spectral-norm-free model (see models.plain_twin); its parameters'
    names are the graph's weight inputs, in `self.names` order. The graph runs in the
    dtype it was traced in.
    """

    def __init__(self, template: nn.Module, divergence: Divergence, sample_shape: tuple[int, ...],
                 portable: bool = False, dtype: torch.dtype = torch.float32):
        self.names = [n for n, _ in template.named_parameters()]
        self.sample_shape = tuple(sample_shape)
        self.divergence = divergence
        names, f_prime_grad = self.names, divergence.f_prime_grad

        def drift(weights, x):
            params = dict(zip(names, weights))
            out, pullback = vjp(lambda x_: functional_call(template, params, (x_,)), x)
            (g,) = pullback(f_prime_grad(out))
            return g, out

        # Only the batch is symbolic: weight and sample shapes are fixed by the model. The
        # trace also fixes the dtype of the constants it creates (masks, f'' fills).
        fake_mode = FakeTensorMode(shape_env=ShapeEnv())

        def fake(shape, dynamic_batch=False):
            dims = [DimDynamic.DYNAMIC if i == 0 and dynamic_batch else DimDynamic.STATIC for i in range(len(shape))]
            return fake_mode.from_tensor(torch.empty(shape, dtype=dtype),
                                         symbolic_context=StatelessSymbolicContext(dynamic_sizes=dims))

        example_w = [fake(p.shape) for _, p in template.named_parameters()]
        example_x = fake((3, *self.sample_shape), dynamic_batch=True)  # 3: not specialised like 0 or 1
        self.graph = make_fx(drift, tracing_mode="symbolic",
                             decomposition_table=PORTABLE_DECOMPOSITIONS if portable else {})(example_w, example_x)

    def weights(self, params: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"weights missing for the drift graph: {', '.join(missing[:5])}")
        return [params[n] for n in self.names]

    def __call__(self, weights: list[torch.Tensor], x: torch.Tensor):
        return self.graph(weights, x)
