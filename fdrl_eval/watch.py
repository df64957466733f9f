"""fdrl-train's quality watch (config keys eval_every, eval_samples): every N steps the EMA
weights are sampled through the artifact path that ships (the exported drift graph on
ONNX Runtime, fdrl_runtime's prior, noise keying and K + kappa loop: what `fdrl-infer`
runs) and judged by the preset's own measure against held-out data, with the numbers
`fdrl-eval --against NAME` gives on the same samples.

The graph is exported once, at the first evaluation; later ones refit its weights
(fdrl_export.refit: no new trace of the exporter), so an evaluation costs a drift-graph
derivation, the sampling and the measure.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fdrl_core.errors import FdrlError

SEED = 12345  # the same prior draws and noise at every evaluation: the curve shows the weights


@dataclass(frozen=True)
class Measure:
    against: str                          # fdrl-eval --against NAME
    report: Callable[[np.ndarray], dict]  # samples -> fdrl-eval's report
    keys: tuple[str, ...]                 # what goes into metrics.jsonl; keys[0] ranks checkpoints (lower is better)


def stats_measure(path: str, features: str, sample_shape) -> Measure:
    """FID against a statistics .npz (fdrl-eval --save-stats) in `features`; what is missing
    (the file, the Inception weights, pytorch-fid) is named before training starts."""
    from .cli import fid_report
    from .inception import inception_home, read_stats
    from .samples import EvalError
    read_stats(path)  # a bad file is named now, not at the first judged step
    if len(sample_shape) != 3:
        raise EvalError(f"config key 'eval_against': FID takes images; this dataset's samples are points: "
                        "leave eval_against unset")
    if features == "digits":
        if tuple(sample_shape) != (1, 28, 28):
            raise EvalError(f"config key 'eval_features': digits features take 28x28 grey images, not "
                            f"{tuple(sample_shape)}: use inception")
        return Measure(f"{path} --features digits", lambda x: fid_report(x, path, "digits"), ("fid",))
    home = inception_home()  # the weights on disk, or a one-line error now
    try:
        import pytorch_fid  # noqa: F401
    except ImportError:
        raise EvalError("config key 'eval_against': Inception FID needs pytorch-fid: pip install 'fdrl[eval]'") from None

    def report(x):
        with home:
            return fid_report(x, path, "inception")
    return Measure(path, report, ("fid",))


def measure_for(dataset: str) -> Measure | None:
    from .cli import TOYS, digit_report, toy_report
    if dataset in TOYS:
        keys = ("mmd2", "modes_covered") if dataset == "25gaussians" else ("mmd2",)
        return Measure(dataset, lambda x: toy_report(x, dataset, 0.1), keys)
    if dataset == "digits":
        from .digits import digits_report
        return Measure("digits", digits_report, ("digit_fd", "mmd2"))
    if dataset == "mnist":
        return Measure("mnist", digit_report, ("digit_fd", "digit_kid"))
    return None


class QualityWatch:
    """Judge a training run's weights as the runtime samples them."""

    def __init__(self, cfg: dict, n: int, sample_shape):
        self.cfg, self.n = cfg, n
        if cfg["eval_against"]:
            self.measure = stats_measure(cfg["eval_against"], cfg["eval_features"], sample_shape)
        else:
            self.measure = measure_for(cfg["dataset"])
        if self.measure is None:
            raise FdrlError(f"config key 'eval_every': no quality measure for dataset '{cfg['dataset']}' of its own "
                            "(toys, digits and mnist have one): give eval_against=STATS.npz (FID; fdrl-eval "
                            "--save-stats makes one) or set eval_every=0")
        self.artifact = None
        # fdrl-train exports through this watch: its logs are the command's to quiet (to_onnx.py)
        from fdrl_export.to_onnx import quiet_exporter_logs
        quiet_exporter_logs()

    @property
    def primary(self) -> str:
        return "eval_" + self.measure.keys[0]

    def _row(self, report: dict, prefix: str) -> dict:
        return {prefix + k: report[k] for k in self.measure.keys if k in report}

    def prior_row(self, prior_state: dict, value_range) -> dict:
        """The prior's own figure (its draws, clamped as the runtime clamps them), for scale."""
        import torch

        from fdrl_train.priors import prior_from_state
        x = prior_from_state(prior_state).sample(self.n, torch.Generator().manual_seed(SEED)).numpy()
        if value_range is not None:
            x = np.clip(x, *value_range)
        return self._row(self.measure.report(x), "eval_prior_")

    def _sampler(self, ckpt: dict):
        import torch

        from fdrl_export.export import ExportOptions, checkpoint_meta, resolve_prior
        from fdrl_export.graph import drift_module, estimator_from_checkpoint
        from fdrl_export.refit import constant_record, refit_onnx
        from fdrl_export.to_onnx import drift_onnx
        from fdrl_runtime.api import Sampler
        from fdrl_runtime.artifact import Artifact, onnx_with_metadata
        est = estimator_from_checkpoint(ckpt, "ema" if ckpt.get("ema") is not None else "raw")
        module = drift_module(est).eval()
        opts = ExportOptions()
        meta, prior_arrays = checkpoint_meta(est, ckpt, None, resolve_prior(ckpt, opts), module, opts)
        meta = meta.replace(graph={**meta.graph, "weights": constant_record(module)})
        if self.artifact is None:  # the first time: the exporter's trace
            model = onnx_with_metadata(drift_onnx(module, est.sample_shape), meta, prior_arrays)
        else:
            model = refit_onnx(self.artifact, module, meta, prior_arrays)
        self.artifact = Artifact(Path("<training>"), "onnx", meta, prior_arrays, model.SerializeToString())
        return Sampler(self.artifact, backend="onnxruntime", threads=torch.get_num_threads())

    def __call__(self, ckpt: dict) -> tuple[dict, np.ndarray | None]:
        """(metrics.jsonl values, the samples judged) for the weights of checkpoint dict `ckpt`;
        ({"eval_nonfinite": 1}, None) when the flow diverges (early weights can): a fact to log,
        not a reason to stop training."""
        from fdrl_runtime.api import NonFiniteSamples
        with self._sampler(ckpt) as sampler:
            try:
                x = sampler.sample(self.n, seed=SEED)
            except NonFiniteSamples:
                return {"eval_nonfinite": 1}, None
        return self._row(self.measure.report(x), "eval_"), x

    def plot(self, rows: list[dict], path: Path) -> None:
        against = self.measure.against
        how = f"fdrl-eval SAMPLES {against}" if self.cfg["eval_against"] else f"fdrl-eval --against {against}"
        plot_quality(rows, self.primary, path, f"{self.cfg['dataset']}: {self.primary[5:]} ({how})")


def plot_quality(rows: list[dict], key: str, path: Path, title: str) -> None:
    """quality.png: `key` against the step, the prior's figure as a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fdrl_core.atomic import atomic_path
    points = [(r["step"], r[key]) for r in rows if key in r]
    prior = next((r["eval_prior_" + key[5:]] for r in rows if "eval_prior_" + key[5:] in r), None)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    if points:
        ax.plot(*zip(*points), marker="o", label="EMA weights, through the runtime")
    if prior is not None:
        ax.axhline(prior, linestyle="--", color="grey", label="the prior")
    ax.set_xlabel("step")
    ax.set_ylabel(key[5:])
    ax.set_title(title, fontsize=10)
    if points and prior is not None and min(v for _, v in points) > 0 and prior > 0:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
