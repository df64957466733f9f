"""The artifact format: the only contract between fdrl_export and fdrl_runtime.

An artifact holds the step graph x -> (drift, score) and everything `fdrl-infer` needs to
sample from it with no other input: the flow's hyper-parameters, the sample shape and
value range, the prior, the source and a format version (`meta`: fdrl_core.contract.ArtifactMeta,
the contract; this module holds where each file type keeps it).

- `.onnx`: an ONNX model; `meta` as JSON in metadata_props["fdrl"], the prior's arrays
  as initializers named "fdrl.prior.<name>" that no node reads (stripped before a
  session is made).
- `.plan` / `.engine` (TensorRT): an engine has no room for metadata, so it sits beside
  it in PATH + ".fdrl.npz": `meta` (JSON), the engine's SHA-256 and the prior's arrays.
- `.pt2` (torch.export): `meta` and the prior's arrays in the archive's extra files.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fdrl_core.atomic import atomic_write_bytes
from fdrl_core.contract import FORMAT, FORMAT_VERSION, ArtifactError, ArtifactMeta  # noqa: F401  (re-exported)
from fdrl_core.errors import not_a_file
from fdrl_core.prior import PriorSpec

ONNX_META_KEY = "fdrl"
ONNX_PRIOR_KEY = "fdrl.prior"   # format 2: the prior's arrays, an .npz in base64, in metadata_props
PRIOR_PREFIX = "fdrl.prior."    # format 1: the prior's arrays as initializers (read, no longer written)
# A copy of both metadata entries in the graph's doc_string, for tools that rebuild the model
# and drop metadata_props (polygraphy surgeon, through onnx-graphsurgeon, keeps only the graph's).
GRAPH_DOC_MARKER = "fdrl artifact metadata, a copy of metadata_props (for tools that drop them): "
GRAPH_DOC_PRIOR_LIMIT = 64 << 20  # base64 characters: a larger prior is not copied
RESEAL = "fdrl-export --reseal"
SIDECAR_SUFFIX = ".fdrl.npz"
KINDS = {".onnx": "onnx", ".plan": "tensorrt", ".engine": "tensorrt", ".pt2": "torch"}


@dataclass
class Artifact:
    path: Path
    kind: str                      # "onnx", "tensorrt" or "torch"
    meta: ArtifactMeta
    prior_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    payload: bytes | None = None   # the ONNX model without the prior initializers
    prior: PriorSpec = field(init=False)

    def __post_init__(self):
        self.prior = PriorSpec.from_artifact(self.meta.prior, self.prior_arrays, self.meta.sample_shape,
                                             str(self.path))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.meta.sample_shape

    @property
    def value_range(self) -> tuple[float, float] | None:
        return self.meta.value_range

    @property
    def default_steps(self) -> int:
        return self.meta.default_steps

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3


def artifact_kind(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in KINDS:
        raise ArtifactError(f"{path}: unknown artifact type '{suffix or '(none)'}'; "
                            f"use {', '.join(sorted(KINDS))}")
    return KINDS[suffix]


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _read_npz(data: bytes | str | os.PathLike, where: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # a damaged zip or array raises many kinds of error
        raise ArtifactError(f"{where} is corrupt: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}") from None


# --- writing (used by fdrl_export) -----------------------------------------------------------

def meta_json(meta: ArtifactMeta) -> str:
    return json.dumps(meta.to_dict(), sort_keys=True)


def onnx_digest(model, prior_arrays: dict[str, np.ndarray], meta: ArtifactMeta) -> str:
    """SHA-256 of the graph (weights included), the prior's arrays and the metadata (less
    the digest itself): what a flipped bit anywhere that matters would change."""
    graph = model.graph
    if graph.doc_string.startswith(GRAPH_DOC_MARKER):  # the copy holds the digest: not part of it
        import onnx
        graph = onnx.GraphProto()
        graph.CopyFrom(model.graph)
        graph.doc_string = ""
    h = hashlib.sha256(graph.SerializeToString(deterministic=True))
    unsealed = {k: v for k, v in meta.to_dict().items() if k != "payload_sha256"}
    h.update(json.dumps(unsealed, sort_keys=True).encode())
    for name in sorted(prior_arrays):
        a = np.ascontiguousarray(prior_arrays[name])
        h.update(f"{name}:{a.dtype.str}:{list(a.shape)};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def onnx_with_metadata(model, meta: ArtifactMeta, prior_arrays: dict[str, np.ndarray]):
    """Attach meta (with the digest of graph and prior) and prior arrays to an
    onnx.ModelProto (in place; returned)."""
    import base64
    prior_arrays = {k: np.ascontiguousarray(v) for k, v in prior_arrays.items()}
    meta = meta.replace(format_version=FORMAT_VERSION)
    model.graph.doc_string = GRAPH_DOC_MARKER  # the copy below is not hashed; nothing else goes there
    meta = meta.replace(payload_sha256=onnx_digest(model, prior_arrays, meta))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, meta_json(meta)
    if prior_arrays:  # metadata, not initializers: simplifiers drop initializers no node reads
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_PRIOR_KEY, base64.b64encode(_npz_bytes(prior_arrays)).decode("ascii")
    copy = {p.key: p.value for p in model.metadata_props}
    if len(copy.get(ONNX_PRIOR_KEY, "")) > GRAPH_DOC_PRIOR_LIMIT:  # a full 64x64x3 DDP factor is 800 MB
        del copy[ONNX_PRIOR_KEY]                                    # in base64: not twice in one file
    model.graph.doc_string = GRAPH_DOC_MARKER + json.dumps(copy)
    return model


def reseal_onnx(path: str | os.PathLike) -> Artifact:
    """Record the digest of an .onnx artifact as it is now (after a deliberate rewrite by a
    tool); its metadata is validated as on every load. Written atomically."""
    import onnx
    art = load_artifact(path, verify=False)
    model = onnx.load_from_string(art.payload)
    atomic_write_bytes(path, onnx_with_metadata(model, art.meta, art.prior_arrays).SerializeToString())
    return load_artifact(path)


def write_sidecar(engine_path: str | os.PathLike, meta: ArtifactMeta, prior_arrays: dict[str, np.ndarray]) -> Path:
    """The metadata file beside a TensorRT engine; call after the engine is in place."""
    side = Path(str(engine_path) + SIDECAR_SUFFIX)
    arrays = {f"prior_{k}": v for k, v in prior_arrays.items()}
    arrays["meta"] = np.array(meta_json(meta))
    arrays["engine_sha256"] = np.array(sha256_file(engine_path))
    atomic_write_bytes(side, _npz_bytes(arrays))
    return side


def pt2_extra_files(meta: ArtifactMeta, prior_arrays: dict[str, np.ndarray]) -> dict[str, str]:
    return {"fdrl_meta.json": meta_json(meta),
            "fdrl_prior.npz.hex": _npz_bytes(prior_arrays).hex()}


# --- reading ---------------------------------------------------------------------------------

def load_artifact(path: str | os.PathLike, with_payload: bool = True, verify: bool = True) -> Artifact:
    """The artifact at `path`; verify=False skips the .onnx digest (fdrl-export --reseal only)."""
    path = Path(path)
    kind = artifact_kind(path)
    if not path.is_file():
        raise ArtifactError(f"artifact {path} {not_a_file(path)}")
    if kind == "onnx":
        return _load_onnx(path, with_payload, verify)
    if kind == "tensorrt":
        return _load_engine(path)
    return _load_pt2(path, verify)


def _load_onnx(path: Path, with_payload: bool, verify: bool = True) -> Artifact:
    try:
        import onnx
    except ImportError:
        raise ArtifactError("reading .onnx artifacts needs the 'onnx' package: pip install 'fdrl[onnx]'") from None
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ArtifactError(f"artifact {path} is not a readable ONNX file (truncated or corrupt): "
                            f"{str(e).splitlines()[0][:120] if str(e) else type(e).__name__}") from None
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_META_KEY not in props and model.graph.doc_string.startswith(GRAPH_DOC_MARKER):
        try:  # a tool dropped metadata_props; the graph's copy stands in (the digest still decides)
            props = json.loads(model.graph.doc_string[len(GRAPH_DOC_MARKER):])
        except json.JSONDecodeError:
            raise ArtifactError(f"{path}: the copy of the fdrl metadata in the graph is not valid JSON") from None
    if ONNX_META_KEY not in props:
        raise ArtifactError(f"{path} is an ONNX model but not an fdrl artifact: export it with fdrl-export")
    try:
        meta = json.loads(props[ONNX_META_KEY])
    except json.JSONDecodeError:
        raise ArtifactError(f"{path}: the fdrl metadata is not valid JSON") from None
    meta = ArtifactMeta.from_dict(meta, str(path))
    from onnx import numpy_helper
    prior, keep = {}, []
    for init in model.graph.initializer:  # format 1
        if init.name.startswith(PRIOR_PREFIX):
            prior[init.name[len(PRIOR_PREFIX):]] = numpy_helper.to_array(init)
        else:
            keep.append(init)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    if ONNX_PRIOR_KEY in props:  # format 2
        import base64
        import binascii
        try:
            prior = _read_npz(base64.b64decode(props[ONNX_PRIOR_KEY], validate=True), f"{path}: the prior's arrays")
        except binascii.Error:
            raise ArtifactError(f"{path}: the prior's arrays are damaged (not base64); export it again") from None
    if verify and meta.payload_sha256 is not None and onnx_digest(model, prior, meta) != meta.payload_sha256:
        raise ArtifactError(f"artifact {path} does not match the digest written with it: damaged (a disk or a copy), "
                            f"or rewritten by a tool (onnxsim, onnxslim, polygraphy); if you rewrote it on purpose, "
                            f"{RESEAL} {path} records the new digest")
    payload = model.SerializeToString() if with_payload else None
    return Artifact(path, "onnx", meta, prior, payload)


def _load_engine(path: Path) -> Artifact:
    side = Path(str(path) + SIDECAR_SUFFIX)
    if not side.is_file():
        raise ArtifactError(f"{side} is missing: a TensorRT engine needs the metadata file fdrl-export "
                            "writes beside it; export the engine again")
    arrays = _read_npz(side, str(side))
    try:
        meta = json.loads(str(arrays.pop("meta")))
        expected = str(arrays.pop("engine_sha256"))
    except (KeyError, json.JSONDecodeError):
        raise ArtifactError(f"{side} is not an fdrl engine metadata file") from None
    if sha256_file(path) != expected:
        raise ArtifactError(f"{side} does not match {path} (the engine was rebuilt or replaced): export again")
    meta = ArtifactMeta.from_dict(meta, str(path))
    prior = {k[len("prior_"):]: v for k, v in arrays.items() if k.startswith("prior_")}
    return Artifact(path, "tensorrt", meta, prior)


# What a torch.export archive may hold without torch.export.load unpickling anything:
# tensors as raw bytes described by JSON configs, the program as JSON, plain extra files.
_PT2_PLAIN = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id")
_PT2_PLAIN_DIRS = ("models/", "data/weights/", "data/constants/", "data/sample_inputs/", "extra/")


def pt2_pickled_members(path: str | Path) -> list[str]:
    """Members of a .pt2 archive that torch.export.load would unpickle (so could run code
    from): entries marked use_pickle in a weights/constants config, custom or opaque
    objects, legacy pickled weight files, anything outside the plain layout. The sample
    inputs (a torch.save file) are checked by the torch backend with weights_only=True."""
    import zipfile
    bad = []
    with zipfile.ZipFile(path) as z:
        for full in z.namelist():
            name = full.split("/", 1)[1] if "/" in full else full
            if full.endswith("/") or name in _PT2_PLAIN:
                continue
            if not name.startswith(_PT2_PLAIN_DIRS) or name.startswith(("data/weights/", "data/constants/")) \
                    and name.endswith(".pt"):
                bad.append(name)
            elif name.startswith("data/sample_inputs/") and not name.endswith(".pt"):
                bad.append(name)
            elif name.startswith("data/constants/") and not name.endswith(".json") \
                    and not name.split("/")[-1].startswith("tensor_"):
                bad.append(name)  # custom_obj_* / opaque_obj_*: pickles by definition
            elif name.startswith(("data/weights/", "data/constants/")) and name.endswith(".json"):
                try:
                    config = json.loads(z.read(full)).get("config", {})
                    bad += [f"{name}: {fqn}" for fqn, entry in config.items() if entry.get("use_pickle", True)]
                except (ValueError, AttributeError):
                    bad.append(name)
    return bad


PT2_DIGEST = "fdrl_digest.txt"  # format 2: SHA-256 of every other member of the archive


def pt2_digest(z) -> str:
    """SHA-256 over the names and bytes of a .pt2 archive's members (the digest's own left out)."""
    h = hashlib.sha256()
    for name in sorted(z.namelist()):
        if name.split("/")[-1] != PT2_DIGEST and not name.endswith("/"):
            h.update(f"{name};".encode())
            h.update(z.read(name))
    return h.hexdigest()


def seal_pt2(path: str | os.PathLike) -> None:
    """Add the digest member to a .pt2 that torch.export.save has just written (in place:
    call on the temporary file, before it is renamed into place)."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        digest = pt2_digest(z)
        root = z.namelist()[0].split("/")[0]
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{root}/extra/{PT2_DIGEST}", digest)


def _load_pt2(path: Path, verify: bool = True) -> Artifact:
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            names = {n.split("/")[-1]: n for n in z.namelist()}
            if "fdrl_meta.json" not in names:
                raise ArtifactError(f"{path} is a torch.export archive but not an fdrl artifact: export it with fdrl-export")
            meta = json.loads(z.read(names["fdrl_meta.json"]))
            prior = _read_npz(bytes.fromhex(z.read(names["fdrl_prior.npz.hex"]).decode()), str(path)) \
                if "fdrl_prior.npz.hex" in names else {}
            if verify and PT2_DIGEST in names and z.read(names[PT2_DIGEST]).decode() != pt2_digest(z):
                raise ArtifactError(f"artifact {path} does not match the digest written with it (damaged on a disk "
                                    "or in a copy, or edited): export it again")
    except zipfile.BadZipFile:
        raise ArtifactError(f"artifact {path} is not a readable .pt2 archive (truncated or corrupt)") from None
    except ArtifactError:
        raise
    except (ValueError, UnicodeDecodeError):
        raise ArtifactError(f"{path}: the fdrl metadata in the archive is not valid JSON") from None
    meta = ArtifactMeta.from_dict(meta, str(path))
    return Artifact(path, "torch", meta, prior)
