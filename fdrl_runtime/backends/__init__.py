"""Backends run the step graph on a device; the loop (loop.py) is theirs to share.

Each lives in its own module and is imported only when chosen, so the runtime imports
no torch unless the torch backend is asked for.
"""
from __future__ import annotations

import importlib

from .base import Backend, BackendError

NAMES = ("onnxruntime", "tensorrt", "torch")
_MODULES = {"onnxruntime": ".onnxruntime", "tensorrt": ".tensorrt", "torch": ".torch"}
# The backend that can run an artifact of each kind.
FOR_KIND = {"onnx": "onnxruntime", "tensorrt": "tensorrt", "torch": "torch"}


def backend_class(name: str) -> type[Backend]:
    if name not in _MODULES:
        raise BackendError(f"unknown backend '{name}'; use auto, {', '.join(NAMES)}")
    return importlib.import_module(_MODULES[name], __name__).BACKEND


def resolve_backend(name: str, artifact_kind: str) -> str:
    """'auto' -> the backend for the artifact's kind; otherwise check that they fit."""
    wanted = FOR_KIND[artifact_kind]
    if name == "auto":
        return wanted
    if name not in NAMES:
        raise BackendError(f"unknown backend '{name}'; use auto, {', '.join(NAMES)}")
    if name != wanted:
        raise BackendError(f"backend '{name}' cannot run a {artifact_kind} artifact; use --backend {wanted} "
                           f"(or export a {'.onnx' if name == 'onnxruntime' else '.plan' if name == 'tensorrt' else '.pt2'} artifact)")
    return name
