"""Checkpoint -> artifact: derive the drift graph, export it, check it, write it atomically."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fdrl_core.atomic import atomic_path, atomic_write_bytes, remove_stale_temps
from fdrl_core.prior import PriorSpec
from fdrl_runtime.artifact import (
    artifact_kind,
    load_artifact,
    onnx_with_metadata,
    sha256_file,
    write_sidecar,
)
from fdrl_train.checkpoint import load_checkpoint
from fdrl_train.reference import load_reference_ddp_prior

from .check import CheckResult, check_drift, check_inputs, check_step, compare_engine
from .graph import (
    ClassifierSpec,
    ExportError,
    drift_module,
    estimator_from_checkpoint,
)
from .meta import build_meta
from .refit import constant_record, refit_onnx, weight_record
from .to_onnx import drift_onnx


@dataclass
class ExportOptions:
    weights: str = "ema"
    check: bool = True
    prior: str | None = None          # override: "up", "normal", "input" or a DDP .pt file
    trust_pickle: bool = False
    refine_steps: int | None = None
    batch: str = "1:64:256"           # TensorRT profile
    precision: str = "fp32"
    workspace_mb: int = 4096
    timing_cache: str | None = None
    classifier: str | None = None     # compose with this classifier (class-conditional flow)
    phi: float = 0.1
    # The float64 check's two batches (prior draws, then an odd batch of random inputs): fewer
    # samples check the same graph at a fraction of the cost on the largest models.
    check_sizes: tuple[int, int] = (32, 33)


def resolve_prior(ckpt: dict, opts: ExportOptions) -> dict | None:
    """The prior the artifact samples from: the checkpoint's, or the one the user gave."""
    shape = tuple(ckpt["sample_shape"])
    if opts.prior is None:
        if ckpt.get("prior") is not None and not PriorSpec.from_state(ckpt["prior"]).drawable:
            return None  # translation: the artifact takes its starting images from --init
        if ckpt.get("prior") is None:
            raise ExportError("this checkpoint does not record its prior (a reference image checkpoint): "
                              "give --prior FILE_ddp.pt --trust-pickle, --prior up, or --prior input")
        return ckpt["prior"]
    if opts.prior == "input":
        return None
    if opts.prior == "up":
        return PriorSpec("up", shape, clamp=True).to_state()
    if opts.prior == "normal":
        return PriorSpec("normal", shape, clamp=False, std=1.0).to_state()
    return load_reference_ddp_prior(opts.prior, shape, opts.trust_pickle)


def load_classifier_spec(path, est, phi: float):
    """The classifier to compose with; it must take the estimator's samples."""
    from fdrl_train.classifier import load_classifier_checkpoint
    model, ck = load_classifier_checkpoint(path)
    if tuple(ck["sample_shape"]) != tuple(est.sample_shape):
        raise ExportError(f"classifier {path} takes samples of shape {tuple(ck['sample_shape'])}, "
                          f"the model {tuple(est.sample_shape)}")
    if ck["n_classes"] < 2:
        raise ExportError(f"classifier {path} has {ck['n_classes']} classes; need at least 2")
    if phi <= 0:
        raise ExportError(f"--phi {phi}: must be positive (the paper uses 0.1)")
    return ClassifierSpec(model, int(ck["n_classes"]), float(phi), sha256_file(path))


def _ort_session(model):
    """An ONNX Runtime CPU session that also returns the slope masks (the Clip nodes' outputs)."""
    import onnx
    import onnxruntime as ort
    diag = onnx.ModelProto()
    diag.CopyFrom(model)
    masks = [n.output[0] for n in diag.graph.node if n.op_type == "Clip"]
    diag.graph.output.extend(onnx.helper.make_tensor_value_info(m, onnx.TensorProto.FLOAT, None) for m in masks)
    import torch
    so = ort.SessionOptions()
    # As many threads as torch was given (the export's own knob), not ORT's default of
    # every physical core: beside other work that default is what ran out of threads.
    so.intra_op_num_threads, so.inter_op_num_threads = torch.get_num_threads(), 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(diag.SerializeToString(), so, providers=["CPUExecutionProvider"]), masks


def _ort_runner(model, conditional: bool = False):
    """drift and the slope masks (outputs of the Clip nodes, see check.py) on ONNX Runtime."""
    sess, masks = _ort_session(model)

    def run(x, y=None):
        feeds = {"x": x} if not conditional else {"x": x, "y": y.astype(np.int64)}
        drift, *mask_values = sess.run(["drift"] + masks, feeds)
        return drift, dict(zip(masks, mask_values))
    return run


def ort_step_runner(step_model):
    """The fused step graph on ONNX Runtime: (x, noise) -> (x_next, drift, slope masks)."""
    sess, masks = _ort_session(step_model)

    def run(x, noise):
        x_next, drift, *mask_values = sess.run(["x_next", "drift"] + masks, {"x": x, "noise": noise})
        return x_next, drift, dict(zip(masks, mask_values))
    return run


def checked_step_graph(est, step_model, prior_state, eta: float, nu: float):
    """The step graph an engine is built from, checked on ONNX Runtime against float64;
    an ExportError (nothing written) if it fails."""
    result = check_step(est, ort_step_runner(step_model), prior_state, eta, nu)
    if not result.passed:
        raise ExportError(f"the step graph for TensorRT (ONNX Runtime, fp32) does not match float64 autograd "
                          f"and the update formula: {result.describe()}; nothing was written")
    return result


def _torch_runner(program, module):
    """drift from the exported program; the masks from the same graph run node by node."""
    run_program = program.module()
    clamp = torch.ops.aten.clamp.default

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            if node.target is clamp:
                self.masks[node.name] = out.detach().numpy()
            return out

    def run(x, y=None):
        rec = Recorder(module.bound)
        rec.masks = {}
        args = (torch.from_numpy(x),) if y is None else (torch.from_numpy(x), torch.from_numpy(y))
        with torch.no_grad():
            rec.run(*args)
            return run_program(*args)[0].numpy(), rec.masks
    return run


def export(ckpt_path: str | os.PathLike, out: str | os.PathLike, opts: ExportOptions, log=print) -> CheckResult | None:
    out = Path(out)
    kind = artifact_kind(out)
    if not out.parent.exists() or not os.access(out.parent, os.W_OK):
        raise ExportError(f"cannot write {out}: folder {out.parent} does not exist or is not writable")
    remove_stale_temps(out.parent)  # an earlier export killed mid-write
    if kind == "tensorrt":  # fail before the slow part
        from .to_tensorrt import engine_settings, require_tensorrt
        settings = engine_settings(opts.batch, opts.precision, opts.workspace_mb, opts.timing_cache)
        require_tensorrt()
    elif opts.precision != "fp32":
        raise ExportError(f"--precision {opts.precision} applies to TensorRT engines (.plan); "
                          ".onnx and .pt2 artifacts are fp32 (the runtime chooses mixed precision)")
    ckpt = load_checkpoint(ckpt_path)
    prior_state = resolve_prior(ckpt, opts)
    est = estimator_from_checkpoint(ckpt, opts.weights)
    classifier = load_classifier_spec(opts.classifier, est, opts.phi) if opts.classifier else None
    if classifier is not None and kind == "tensorrt":
        raise ExportError("class-conditional TensorRT engines are not built yet: export to .onnx or .pt2")
    module = drift_module(est, classifier=classifier).eval()
    meta, prior_arrays = checkpoint_meta(est, ckpt, ckpt_path, prior_state, module, opts)
    if classifier is not None:
        meta = meta.replace(conditional={"n_classes": classifier.n_classes, "phi": classifier.phi,
                                         "classifier_sha256": classifier.sha256},
                            graph={**meta.graph, "input": ["x", "y"]})
    result = None
    if kind in ("onnx", "tensorrt"):
        model = drift_onnx(module, est.sample_shape)
        record = weight_record(module, model) if classifier is None else None
        if record:  # which initializer holds which weights: what fdrl-export --refit needs
            meta = meta.replace(graph={**meta.graph, "weights": record})
        if opts.check and kind == "onnx":  # an engine's step graph is checked below, drift output included
            result = _checked(est, _ort_runner(model, classifier is not None), prior_state, "ONNX Runtime", classifier,
                              opts.check_sizes)
        if kind == "onnx":
            atomic_write_bytes(out, onnx_with_metadata(model, meta, prior_arrays).SerializeToString())
        else:
            from .to_tensorrt import build_engine, engine_runner
            from fdrl_core.step_graph import step_model as build_step_model
            # The drift graph's own nodes plus the update: the graph the runtime's ORT backend
            # runs as a Scan, so the CPU path tests what the engine is built from.
            step_model = build_step_model(model, meta.eta, meta.noise)
            if opts.check:  # what the engine is built from, checked before the (slow) build
                result = checked_step_graph(est, step_model, prior_state, meta.eta, meta.noise)
            engine = build_engine(step_model.SerializeToString(), est.sample_shape, settings, log=log)
            if opts.check:  # and the engine itself against ONNX Runtime on the same inputs
                reference = ort_step_runner(step_model)
                batches = [x.numpy() for x in check_inputs(est, prior_state, (settings.opt_batch, settings.min_batch))]
                cmp = compare_engine(engine_runner(engine), lambda x, n: reference(x, n)[:2], batches,
                                     meta.eta, meta.noise, opts.precision)
                log(f"fdrl-export: {cmp.describe()}")
                if not cmp.passed:
                    raise ExportError(f"the TensorRT engine does not match ONNX Runtime: {cmp.describe()}; "
                                      "nothing was written (try --precision fp32)")
            meta = meta.replace(graph={"input": ["x", "noise"], "outputs": ["x_next", "drift"], "dtype": opts.precision,
                                       "batch": [settings.min_batch, settings.opt_batch, settings.max_batch]})
            atomic_write_bytes(out, engine)
            write_sidecar(out, meta, prior_arrays)
    else:
        from .to_torch import export_program, save_program
        program = export_program(module, est.sample_shape)
        if opts.check:
            result = _checked(est, _torch_runner(program, module), prior_state, "torch.export", classifier,
                              opts.check_sizes)
        with atomic_path(out) as tmp:
            save_program(program, tmp, meta, prior_arrays)
    return result


def checkpoint_meta(est, ckpt: dict, ckpt_path, prior_state, module, opts: ExportOptions):
    """The metadata and prior arrays an artifact of this checkpoint carries (export and refit;
    ckpt_path None: a checkpoint in memory, fdrl-train's quality watch)."""
    if ckpt_path is None:
        return build_meta(est, ckpt, prior_state, module, "in memory", opts.refine_steps)
    meta, prior_arrays = build_meta(est, ckpt, prior_state, module, sha256_file(ckpt_path), opts.refine_steps)
    # where the checkpoint was, so fdrl-bench ARTIFACT can find it for its reference rows (by SHA-256)
    return meta.replace(source={**meta.source, "checkpoint": str(Path(ckpt_path).resolve())}), prior_arrays


def refit(artifact_path: str | os.PathLike, ckpt_path: str | os.PathLike, out: str | os.PathLike,
          opts: ExportOptions) -> CheckResult | None:
    """OUT: the .onnx artifact ARTIFACT with CKPT's weights (refit.py), checked as an export is."""
    out = Path(out)
    for path in (artifact_path, out):
        if artifact_kind(path) != "onnx":
            raise ExportError(f"--refit works on .onnx artifacts, not {path}: export the checkpoint with fdrl-export")
    if not out.parent.exists() or not os.access(out.parent, os.W_OK):
        raise ExportError(f"cannot write {out}: folder {out.parent} does not exist or is not writable")
    if opts.classifier:
        raise ExportError("--refit does not compose a classifier: export the checkpoint with --classifier")
    remove_stale_temps(out.parent)
    art = load_artifact(artifact_path)
    ckpt = load_checkpoint(ckpt_path)
    prior_state = resolve_prior(ckpt, opts)
    est = estimator_from_checkpoint(ckpt, opts.weights)
    module = drift_module(est).eval()
    meta, prior_arrays = checkpoint_meta(est, ckpt, ckpt_path, prior_state, module, opts)
    meta = meta.replace(graph={**meta.graph, "weights": constant_record(module)})
    model = refit_onnx(art, module, meta, prior_arrays)
    result = _checked(est, _ort_runner(model), prior_state, "ONNX Runtime, refit", None,
                      opts.check_sizes) if opts.check else None
    atomic_write_bytes(out, model.SerializeToString())
    return result


def _checked(est, run, prior_state, what: str, classifier=None, sizes=(32, 33)) -> CheckResult:
    result = check_drift(est, run, prior_state, sizes, classifier=classifier)
    if not result.passed:
        raise ExportError(f"the exported graph ({what}, fp32) does not match float64 autograd: "
                          f"{result.describe()}; nothing was written (--no-check writes it anyway)")
    return result

