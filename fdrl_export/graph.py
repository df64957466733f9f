"""The exported step graph: x -> (drift, score) with the weights baked in as constants.

The drift comes from fdrl_train's DriftGraph (portable flavour), so the gradient is
derived from the model, never written by hand. Binding the weights lets every
weight-only subexpression (flipped convolution kernels, transposed matrices, spectral
norm already folded by plain_params) be computed once here instead of at every step.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn

from fdrl_core.errors import FdrlError
from fdrl_train.drift import DriftGraph
from fdrl_train.losses import get_pairing
from fdrl_train.models import build_model, plain_params, plain_twin


class ExportError(FdrlError, ValueError):
    """The export cannot go on; the message says why and what to do."""


@dataclass
class Estimator:
    """A checkpoint's estimator, ready to export: the plain weights of the chosen set."""
    cfg: dict
    sample_shape: tuple[int, ...]
    model: nn.Module          # the full model (with spectral norm if configured), eval mode
    params: dict[str, torch.Tensor]  # plain weights: spectral norm folded in
    weights: str              # "ema" or "raw"

    def twin(self) -> nn.Module:
        return plain_twin(self.cfg, self.sample_shape)


def estimator_from_checkpoint(ckpt: dict, weights: str = "ema") -> Estimator:
    cfg, shape = ckpt["config"], tuple(ckpt["sample_shape"])
    model = build_model(cfg, shape)
    state = ckpt["model"]
    if weights == "ema":
        if ckpt.get("ema") is None:
            raise ExportError("the checkpoint has no EMA weights: use --weights raw")
        state = ckpt["ema"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))),
                      lines[0] if lines else type(e).__name__)
        first = detail[:200]
        raise ExportError(f"the checkpoint's weights do not fit model '{cfg['model']}': {first}") from None
    model.eval()
    # The exported sigma is W's exact largest singular value (the converged power iteration).
    params = {k: v.detach().float().clone() for k, v in plain_params(model, sigma="exact").items()}
    return Estimator(cfg, shape, model, params, weights)


class _Constants(nn.Module):
    pass


def bind_weights(graph: DriftGraph, params: dict[str, torch.Tensor]) -> fx.GraphModule:
    """A GraphModule x -> (drift, score) with the weights as constants (buffers c0, c1, ...),
    weight-only subexpressions evaluated once. Its `sources` maps each constant to the plain
    state-dict names it is computed from: the record that lets a refit (refit.py) put another
    checkpoint's weights into an exported graph without tracing it again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deepcopy of pytree specs warns about deprecated APIs
        gm = copy.deepcopy(graph.graph)
    g = gm.graph
    placeholders = [n for n in g.nodes if n.op == "placeholder"]
    weight_nodes = placeholders[:len(graph.names)]  # then x (and y for a composed graph)
    holder = _Constants()
    values: dict[fx.Node, torch.Tensor] = {}
    sources: dict[fx.Node, frozenset[str]] = {}  # the state-dict names each constant is computed from
    for node, name in zip(weight_nodes, graph.names):
        values[node], sources[node] = params[name], frozenset([name])
    # Evaluate every node whose inputs are all known constants.
    for node in list(g.nodes):
        if node.op != "call_function" or node in values:
            continue
        inputs = node.all_input_nodes
        if inputs and all(i in values for i in inputs):
            args = fx.node.map_arg(node.args, lambda n: values[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
            out = node.target(*args, **kwargs)
            if isinstance(out, torch.Tensor):
                values[node] = out
                sources[node] = frozenset().union(*(sources[i] for i in inputs))
    # Materialise the constants that non-constant nodes read.
    count = 0
    holder.sources = {}
    for node, value in values.items():
        if any(u not in values for u in node.users):
            name = f"c{count}"
            count += 1
            holder.register_buffer(name, value.detach().contiguous().clone())
            holder.sources[name] = sorted(sources[node])
            with g.inserting_before(next(n for n in g.nodes if n.op != "placeholder")), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the buffer lives on `holder`, which owns the graph below
                attr = g.get_attr(name)
            node.replace_all_uses_with(attr, delete_user_cb=lambda u: u not in values)
    for node in reversed(list(g.nodes)):
        if node in values and not node.users:
            g.erase_node(node)
    g._codegen = fx.graph.CodeGen()  # plain forward(x): the weights are no longer inputs
    gm = fx.GraphModule(holder, g)
    gm.sources = holder.sources  # GraphModule copies the buffers, not other attributes
    gm.graph.lint()
    gm.recompile()
    return gm


class DriftModule(nn.Module):
    """x -> (drift, score): what every artifact computes. score is D(x) (r or log r), or
    with a classifier composed in, (x, y) -> the conditional drift and score."""

    def __init__(self, bound: fx.GraphModule, conditional: bool = False):
        super().__init__()
        self.bound, self.conditional = bound, conditional

    def forward(self, x, y=None):
        drift, score = self.bound(x, y) if self.conditional else self.bound(x)
        return drift, score


@dataclass
class ClassifierSpec:
    """A classifier to compose with (see fdrl_train.drift.Composition)."""
    model: nn.Module
    n_classes: int
    phi: float
    sha256: str = ""

    def params(self) -> dict[str, torch.Tensor]:
        return {"classifier." + k: v.detach().float() for k, v in plain_params(self.model).items()}


def composition_for(est: Estimator, spec: ClassifierSpec | None):
    if spec is None:
        return None
    from fdrl_train.drift import Composition
    from fdrl_train.losses import LOSSES
    twin = copy.deepcopy(spec.model).to("meta")
    return Composition(twin, spec.n_classes, spec.phi, LOSSES[est.cfg["loss"]].output)


def drift_module(est: Estimator, dtype: torch.dtype = torch.float32, classifier: ClassifierSpec | None = None) -> DriftModule:
    _, divergence = get_pairing(est.cfg["loss"], est.cfg["divergence"])
    graph = DriftGraph(est.twin(), divergence, est.sample_shape, portable=True, dtype=dtype,
                       composition=composition_for(est, classifier))
    params = dict(est.params)
    if classifier is not None:
        params.update(classifier.params())
    bound = bind_weights(graph, {k: v.to(dtype) for k, v in params.items()})
    return DriftModule(bound, conditional=classifier is not None)
