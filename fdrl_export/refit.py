"""Refit: another checkpoint's weights into an exported .onnx graph, without tracing it again.

An export binds the weights into the graph as constants (graph.bind_weights), each computed
once from plain state-dict tensors (spectral norm folded, kernels flipped or transposed
for the input gradient). The artifact records, per ONNX initializer, the state-dict names
it was computed from (`graph.weights` in its metadata). A refit computes the same constants
from the new checkpoint, checks that the record matches name for name and shape for shape
(the same architecture), replaces the initializers' values, takes the checkpoint's flow
settings and prior as a fresh export would, seals, and runs the same float64 check: the
graph's nodes are the old file's, so a refit artifact computes what a fresh export of that
checkpoint computes, bit for bit (tests/test_refit.py).

What it saves is the ONNX export (torch.onnx's trace and translation). The drift graph is
still derived (make_fx, a second or two) to compute the constants, and the check still runs.
"""
from __future__ import annotations

import numpy as np

from fdrl_runtime.artifact import Artifact, onnx_with_metadata

from .graph import DriftModule, ExportError

ONNX_PREFIX = "bound."  # torch.onnx names a buffer `c3` of DriftModule.bound "bound.c3"


def constant_record(module: DriftModule) -> dict[str, list[str]]:
    """{ONNX initializer name: the state-dict names its value is computed from}, one entry per
    weight constant of the module's graph."""
    return {ONNX_PREFIX + name: list(src) for name, src in module.bound.sources.items()}


def weight_record(module: DriftModule, model) -> dict[str, list[str]] | None:
    """What an exported model records for refit: every weight constant must be an initializer
    of its own (None if the exporter folded one into something else: then a refit could not
    find it, and the artifact is not refittable)."""
    names = {i.name for i in model.graph.initializer}
    record = constant_record(module)
    return record if set(record) <= names else None


def _architecture_differs(old, new) -> str:
    keys = ("model", "loss", "divergence", "output", "sample_shape")
    return ", ".join(f"{k} {getattr(old, k)!r} here, {getattr(new, k)!r} in the checkpoint"
                     for k in keys if getattr(old, k) != getattr(new, k))


def refit_onnx(art: Artifact, module: DriftModule, meta, prior_arrays: dict[str, np.ndarray]):
    """The artifact's ONNX model with the constants of `module` (the new checkpoint's) in place
    of its own, sealed with `meta`; an ExportError (one line) if the architectures differ."""
    import onnx
    from onnx import numpy_helper
    where = f"cannot refit {art.path}"
    if art.meta.conditional is not None:
        raise ExportError(f"{where}: refit of a class-conditional artifact is not supported; export it again")
    record = art.meta.graph.get("weights")
    if not isinstance(record, dict) or not record:
        raise ExportError(f"{where}: it records no weight mapping (exported before refit existed); "
                          "export it once with fdrl-export, then refit that")
    differ = _architecture_differs(art.meta, meta)
    new = constant_record(module)
    if not differ and new != record:
        odd = sorted(set(record) ^ set(new))
        differ = (f"weight {odd[0]} is in only one of the two" if odd else
                  next(f"{k} comes from {record[k]} here, {new[k]} in the checkpoint" for k in record if record[k] != new[k]))
    if differ:
        raise ExportError(f"{where}: the checkpoint is another architecture ({differ}); export it with fdrl-export")
    model = onnx.load_from_string(art.payload)
    buffers = dict(module.bound.named_buffers())
    for init in model.graph.initializer:
        if init.name in record:
            value = buffers[init.name[len(ONNX_PREFIX):]].detach().cpu().numpy()
            if value.shape != tuple(init.dims) or numpy_helper.to_array(init).dtype != value.dtype:
                raise ExportError(f"{where}: the checkpoint is another architecture (weight {init.name} has shape "
                                  f"{list(value.shape)} there, {list(init.dims)} here); export it with fdrl-export")
            init.CopyFrom(numpy_helper.from_array(np.array(value, order="C"), init.name))  # 0-d stays 0-d
    return onnx_with_metadata(model, meta, prior_arrays)
