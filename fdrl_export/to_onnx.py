"""Modules -> ONNX (dynamic batch), through torch.onnx's dynamo exporter."""
from __future__ import annotations

import logging
import warnings

import torch

from .graph import DriftModule, ExportError

OPSET = 18


def quiet_exporter_logs() -> None:
    """torch.onnx logs a warning per missing optional package when its registry first
    loads; that is process-wide logging state, so each command that exports calls this at
    its entry (fdrl-export, fdrl-bench, the GPU check), and library code never does."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)


def to_onnx(module: torch.nn.Module, inputs: tuple, input_names: list[str], output_names: list[str],
            opset: int = OPSET):
    """An onnx.ModelProto; dimension 0 of every input is the dynamic batch."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxscript: pip install 'fdrl[onnx]'") from None
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings():  # scoped; torch.onnx's progress prints are fdrl-export's to silence
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, inputs, dynamo=True, input_names=input_names, output_names=output_names,
                                    dynamic_shapes=tuple({0: batch} for _ in inputs), opset_version=opset,
                                    optimize=True, verbose=False)
    model = program.model_proto
    for node in model.graph.node:
        # torch.onnx's per-node provenance: this checkout's paths, and fx names that count the
        # graphs traced before in the process. Dropped, so that an export is the same bytes
        # whoever runs it, and a refit equals a fresh export (refit.py).
        del node.metadata_props[:]
    return model


def drift_onnx(module: DriftModule, sample_shape):
    """x [batch, *shape] (and labels y [batch] when conditional) -> drift, score."""
    x = torch.zeros((3,) + tuple(sample_shape))
    if module.conditional:
        return to_onnx(module, (x, torch.zeros(3, dtype=torch.int64)), ["x", "y"], ["drift", "score"])
    return to_onnx(module, (x,), ["x"], ["drift", "score"])
