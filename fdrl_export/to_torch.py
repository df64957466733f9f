"""DriftModule -> a torch.export program (.pt2) for the runtime's torch backend."""
from __future__ import annotations

import torch

from fdrl_runtime.artifact import pt2_extra_files, seal_pt2

from .graph import DriftModule


def export_program(module: DriftModule, sample_shape):
    x = torch.zeros((3,) + tuple(sample_shape))
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    if module.conditional:
        return torch.export.export(module, (x, torch.zeros(3, dtype=torch.int64)),
                                   dynamic_shapes=({0: batch}, {0: batch}))
    return torch.export.export(module, (x,), dynamic_shapes=({0: batch},))


def save_program(program, path, meta: dict, prior_arrays: dict) -> None:
    try:
        torch.export.save(program, str(path), extra_files=pt2_extra_files(meta, prior_arrays))
    except RuntimeError as e:  # torch's zip writer reports a full disk as "[enforce fail ...] file write failed"
        from .graph import ExportError
        raise ExportError(f"cannot write {path}: {str(e).strip().splitlines()[0][:120]} (is the disk full?)") from None
    seal_pt2(path)
