"""The artifact contract: the metadata every artifact carries, typed and validated once.

fdrl_export makes an `ArtifactMeta`, fdrl_runtime reads one back (fdrl_runtime.artifact
holds the file formats: where in an .onnx, .plan sidecar or .pt2 the JSON and the prior's
arrays sit). `ArtifactMeta.from_dict` is the one validation: the format and its version,
every required key, the types and ranges of the flow's numbers, no unknown keys. So an
artifact with `flow_steps: -5` or `noise: nan` is refused where it is loaded, and a
checkpoint's stray key cannot pass into an artifact.

Format version 1 (tests/fixtures/artifact_v1 pins it): the keys below. Version 2 adds
`payload_sha256` (the .onnx digest of graph, prior and metadata) and keeps an .onnx prior's
arrays in metadata_props instead of initializers (fdrl_runtime.artifact); both are read. A
reader refuses a newer version and names the upgrade.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import FdrlError

FORMAT = "fdrl-artifact"
FORMAT_VERSION = 2
OUTPUTS = ("r", "log_r")  # what the estimator's network outputs (the drift scales by it)


class ArtifactError(FdrlError, ValueError):
    """An artifact that is missing, corrupt, too new or inconsistent; the message says which."""


@dataclass(frozen=True)
class ArtifactMeta:
    sample_shape: tuple[int, ...]
    value_range: tuple[float, float] | None   # samples are clamped to it; None: points, unbounded
    eta: float                                 # step size η
    noise: float                               # ν, the noise scale of each step
    flow_steps: int                            # K
    refine_steps: int                          # κ: fdrl-infer runs K + κ by default
    loss: str
    divergence: str
    output: str                                # "r" or "log_r"
    prior: dict                                # fdrl_core.prior.PriorSpec.to_artifact()'s metadata
    model: str = "unknown"
    graph: dict = field(default_factory=lambda: {"input": "x", "outputs": ["drift", "score"],
                                                 "dtype": "float32", "batch": "dynamic"})
    flops_per_sample: int | None = None
    source: dict = field(default_factory=dict)
    conditional: dict | None = None            # {"n_classes", "phi", "classifier_sha256"}
    created_by: str = "fdrl"
    payload_sha256: str | None = None          # .onnx: the graph's and prior's digest (absent: not checked)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def nu(self) -> float:
        """ν, the scale of each step's noise ξ (stored under the key "noise" in format 1)."""
        return self.noise

    @property
    def default_steps(self) -> int:
        return self.flow_steps + self.refine_steps

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sample_shape"] = list(self.sample_shape)
        d["value_range"] = None if self.value_range is None else list(self.value_range)
        if d["conditional"] is None:
            del d["conditional"]
        for key in ("flops_per_sample", "payload_sha256"):
            if d[key] is None:
                del d[key]
        return d

    def replace(self, **changes) -> "ArtifactMeta":
        return ArtifactMeta.from_dict({**self.to_dict(), **changes}, "the artifact metadata")

    @classmethod
    def from_dict(cls, meta, where: str) -> "ArtifactMeta":
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ArtifactError(f"{where} is not an fdrl artifact (no '{FORMAT}' metadata): export it with fdrl-export")
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ArtifactError(f"{where}: artifact format version {version!r} is not a version: export again")
        if version > FORMAT_VERSION:
            raise ArtifactError(f"{where} has artifact format version {version}; this fdrl reads up to "
                                f"{FORMAT_VERSION}: upgrade fdrl")
        names = {f.name for f in dataclasses.fields(cls)}
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in meta]
        if missing:
            raise ArtifactError(f"{where}: artifact metadata lacks {', '.join(missing)}; export it again")
        unknown = sorted(set(meta) - names)
        if unknown:
            raise ArtifactError(f"{where}: artifact metadata has unknown keys {', '.join(unknown)} "
                                f"(written by a newer or modified fdrl?): export it again")

        def bad(key, why):
            return ArtifactError(f"{where}: artifact metadata {key} = {meta[key]!r}: {why}; export it again")

        shape = meta["sample_shape"]
        if not isinstance(shape, (list, tuple)) or not shape or not all(_is_int(s) and s > 0 for s in shape):
            raise bad("sample_shape", "must be a list of positive integers")
        vr = meta["value_range"]
        if vr is not None:
            if not (isinstance(vr, (list, tuple)) and len(vr) == 2 and all(_is_number(v) for v in vr)
                    and vr[0] < vr[1]):
                raise bad("value_range", "must be null or [low, high] with low < high")
            vr = (float(vr[0]), float(vr[1]))
        for key, lowest, strict in (("eta", 0.0, True), ("noise", 0.0, False)):
            v = meta[key]
            if not _is_number(v) or (v <= lowest if strict else v < lowest):
                raise bad(key, f"must be a finite number {'>' if strict else '>='} {lowest:g}")
        for key in ("flow_steps", "refine_steps"):
            if not _is_int(meta[key]) or meta[key] < 0:
                raise bad(key, "must be an integer >= 0")
        if meta["flow_steps"] + meta["refine_steps"] == 0:
            raise bad("flow_steps", "K + kappa is 0: the artifact would return raw prior draws")
        for key in ("loss", "divergence", "model", "created_by"):
            if key in meta and not (isinstance(meta[key], str) and meta[key]):
                raise bad(key, "must be a non-empty string")
        if meta["output"] not in OUTPUTS:
            raise bad("output", f"must be one of {', '.join(OUTPUTS)}")
        for key in ("prior", "graph", "source"):
            if key in meta and not isinstance(meta[key], dict):
                raise bad(key, "must be an object")
        if not isinstance(meta["prior"].get("kind"), str):
            raise bad("prior", "lacks its kind")
        cond = meta.get("conditional")
        if cond is not None and not (isinstance(cond, dict) and _is_int(cond.get("n_classes"))
                                     and cond["n_classes"] >= 2 and _is_number(cond.get("phi"))):
            raise bad("conditional", "must hold n_classes >= 2 and phi")
        fps = meta.get("flops_per_sample")
        if fps is not None and not (_is_int(fps) and fps >= 0):
            raise bad("flops_per_sample", "must be an integer >= 0")
        values = {**meta, "sample_shape": tuple(int(s) for s in shape), "value_range": vr,
                  "eta": float(meta["eta"]), "noise": float(meta["noise"])}
        return cls(**values)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
