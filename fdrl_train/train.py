"""Training (paper Algorithm 1): data vs. prior samples flowed K steps with the current,
stale estimator; a Bregman loss; one Adam step; an EMA update."""
from __future__ import annotations

import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from fdrl_core.atomic import atomic_write_text, remove_stale_temps
from fdrl_core.errors import one_line
from fdrl_core.prior import PriorSpec

from .checkpoint import checkpoint_dict, save_checkpoint
from .config import dump_config
from .data import load_dataset, load_source_dataset
from .datasets import Dataset
from .distributed import all_mean, any_rank, finish, from_main, max_weight_spread, setup
from .drift import DriftGraph
from .errors import CheckpointError, TrainingError  # noqa: F401  (raised here, caught by the CLI)
from .flow import GraphFlow
from .losses import get_pairing
from .models import build_model, fold_spectral_norm, plain_params, plain_twin
from .priors import (
    DomainPrior,
    GaussianPrior,
    NormalPrior,
    Prior,
    UniformPrior,
    prior_from_state,
)

# Keys that fix what a run is; a resumed run may change the others (steps, logging...).
# Changing these on resume is allowed but changes what the estimator has been learning.
FLOW_KEYS = {"flow_steps": "K: the estimator has been trained against flows of the old length",
             "eta": "the step size the estimator's flows were trained with",
             "noise": "the noise of the flows the estimator was trained against"}
ARCHITECTURE_KEYS = ("dataset", "model", "hidden_dim", "n_hidden_layers", "spectral_norm", "self_attn",
                     "loss", "divergence", "prior", "prior_std", "source")


def _check_optimizer_state(optim: torch.optim.Optimizer) -> None:
    """Adam's load_state_dict takes moments of any shape; the first step would then fail deep
    inside. Each moment must have its parameter's shape, each hyper-parameter be a number."""
    for group in optim.param_groups:
        for key in ("lr", "betas", "eps", "weight_decay"):
            values = group[key] if isinstance(group[key], (tuple, list)) else (group[key],)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise ValueError(f"param group {key} is {group[key]!r}")
        for p in group["params"]:
            for name, value in optim.state.get(p, {}).items():
                if name in ("exp_avg", "exp_avg_sq") and (not torch.is_tensor(value) or value.shape != p.shape):
                    raise ValueError(f"{name} has shape {tuple(getattr(value, 'shape', ()))}, its weight {tuple(p.shape)}")


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; a line a killed run left half-written counts as past the end."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf




FULL_COVARIANCE_MAX_DIM = 3 * 64 * 64
LOW_RANK_DEFAULT = 256


def make_prior(cfg: dict, data: Dataset) -> Prior:
    shape, bounded = data.sample_shape, data.value_range is not None
    if cfg["prior"] == "normal":
        return NormalPrior(shape, cfg["prior_std"], clamp=bounded)
    if cfg["prior"] == "up":
        return UniformPrior(shape, clamp=True)
    if cfg["prior"] == "domain":
        source = load_source_dataset(cfg, shape)
        if source.sample_shape != shape:
            raise TrainingError(f"source '{cfg['source']}' has samples of shape {source.sample_shape}, "
                                f"the data {shape}")
        return DomainPrior(source, cfg["source"])
    rank = cfg["prior_rank"]
    if rank == -1:  # full covariance is d x d: 9.6 GB in fp32 at 128 x 128 x 3
        rank = 0 if math.prod(shape) <= FULL_COVARIANCE_MAX_DIM else LOW_RANK_DEFAULT
    return GaussianPrior.fit(data.batches(), shape, clamp=bounded, rank=rank)


def make_flow(graph: DriftGraph, cfg: dict, image: bool, on_gpu: bool = False) -> GraphFlow:
    """The flow as configured. On a CPU image models get NHWC and one worker per core
    (NOTES.md); on a GPU, chunks of steps are replayed as CUDA graphs."""
    if on_gpu:
        return GraphFlow(graph, cfg["eta"], cfg["noise"], compile=cfg["compile_flow"], channels_last=image,
                         cuda_graphs=not cfg["compile_flow"])
    workers = cfg["flow_workers"] or (torch.get_num_threads() if image and not cfg["compile_flow"] else 1)
    return GraphFlow(graph, cfg["eta"], cfg["noise"], compile=cfg["compile_flow"], workers=workers,
                     channels_last=image)


def flow_drift_graph(cfg: dict, shape: tuple[int, ...], divergence) -> DriftGraph:
    """The drift graph training's flow runs. Under amp it is the portable graph: autocast
    casts `convolution` to bf16 but not `convolution_backward`, whose cuDNN kernel refuses
    bf16 activations with fp32 weights; the portable graph writes the input gradient as
    plain (transposed) convolutions, which autocast casts like the forward ones."""
    return DriftGraph(plain_twin(cfg, shape), divergence, shape, portable=cfg["amp"] != "none")


def lr_at(cfg: dict, step: int) -> float:
    """Learning rate for 0-based step `step`: lr * gamma^(milestones <= step)."""
    return cfg["lr"] * cfg["lr_gamma"] ** sum(1 for m in cfg["lr_milestones"] if m <= step)


class Trainer:
    def __init__(self, cfg: dict, out_dir: str | os.PathLike | None, data: Dataset | None = None,
                 prior: Prior | None = None, quiet: bool = False):
        self.cfg, self.quiet = cfg, quiet
        self.out = Path(out_dir) if out_dir is not None else None
        self.place = setup(cfg["device"], cfg["batch_size"])
        dev = self.place.device
        if cfg["amp"] != "none" and dev.type != "cuda":
            raise TrainingError(f"amp={cfg['amp']} needs a GPU (device is {dev}): use amp=none on a CPU")
        self.data = data or load_dataset(cfg)
        self.shape = self.data.sample_shape
        with torch.random.fork_rng(devices=[]):  # the initial weights from the seed, the caller's RNG untouched
            torch.manual_seed(cfg["seed"])
            self.model = build_model(cfg, self.shape).to(dev)
        self.loss, self.divergence = get_pairing(cfg["loss"], cfg["divergence"])
        self.prior = prior or from_main(self.place, lambda: make_prior(cfg, self.data))
        self.net = self.model
        if self.place.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            self.net = DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]))
        self.ema = ({k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    if cfg["ema_rate"] > 0 else None)
        self.step = 0
        self.gen = torch.Generator().manual_seed(cfg["seed"])
        # On a GPU the flow's noise is drawn there (no host draw and copy per chunk of steps),
        # from a generator of its own, saved with the checkpoint's RNG state.
        self.flow_gen = (torch.Generator(device=dev).manual_seed(cfg["seed"] + 1) if dev.type == "cuda" else None)
        self.drift = flow_drift_graph(cfg, self.shape, self.divergence)
        self.flow = make_flow(self.drift, cfg, image=len(self.shape) == 3, on_gpu=dev.type == "cuda")
        self.watch = self._quality_watch() if cfg["eval_every"] and self.place.is_main else None

    # --- one step of Algorithm 1 -------------------------------------------------------
    def current_weights(self, state: dict | None = None) -> list[torch.Tensor]:
        """The plain weights the flow uses: the live model's (spectral norm from the u, v
        its last training forward iterated), or those of `state` (EMA: the exact sigma)."""
        if state is None:
            params = plain_params(self.model)
        else:
            params = fold_spectral_norm(state, sigma="exact")
        return self.drift.weights({k: v.detach() for k, v in params.items()})

    def train_step(self) -> dict:
        cfg, g, b = self.cfg, self.gen, self.cfg["batch_size"]
        rows, dev = self.place.rows(b), self.place.device
        for group in self.optim.param_groups:
            group["lr"] = lr_at(cfg, self.step)
        # Draws are for the global batch; this rank keeps its rows (distributed.py).
        x_data = self.data.sample(b, g)
        if cfg["dequant"]:
            x_data = x_data + cfg["dequant"] * torch.randn(x_data.shape, generator=g)
        if cfg["hflip"] and x_data.dim() == 4:
            flip = torch.rand(b, generator=g) < 0.5
            x_data = torch.where(flip[:, None, None, None], x_data.flip(3), x_data)
        x0 = self.prior.sample(b, g)
        with self._autocast():
            x_flowed = self.flow(self.current_weights(), x0[rows].to(dev), cfg["flow_steps"],
                                 g if self.flow_gen is None else self.flow_gen,
                                 rows=rows, total=b)
        x_data = x_data[rows].to(dev)
        self.model.train()
        with self._autocast():
            out = self.net(torch.cat([x_data, x_flowed])).float()
        n = x_data.shape[0]
        terms = self.loss(out[:n], out[n:])
        if any_rank(self.place, not bool(torch.isfinite(terms.loss))):
            raise TrainingError(f"loss is not finite at step {self.step + 1}; training stopped "
                                "(the last checkpoint is untouched): lower lr or eta")
        self.optim.zero_grad(set_to_none=True)
        terms.loss.backward()
        self.optim.step()
        if self.ema is not None:
            mu = cfg["ema_rate"]
            with torch.no_grad():
                for k, v in self.model.state_dict().items():
                    if v.is_floating_point():
                        self.ema[k].mul_(mu).add_(v, alpha=1 - mu)
                    else:
                        self.ema[k].copy_(v)
        self.step += 1
        values = all_mean(self.place, [terms.loss.item(), terms.term_data.item(), terms.term_flowed.item(),
                                       terms.r_data.item(), terms.r_flowed.item()])
        return {"step": self.step, **dict(zip(("loss", "term_data", "term_flowed", "r_data", "r_flowed"), values)),
                "lr": lr_at(cfg, self.step - 1)}

    def _autocast(self):
        # No autocast weight cache: the flow's CUDA graphs must see this step's weights.
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cfg["amp"] == "bf16", cache_enabled=False)

    # --- sampling (Algorithm 2) ----------------------------------------------------------
    def sample(self, n: int, steps: int | None = None, weights: str = "ema", seed: int = 0) -> torch.Tensor:
        """n samples: prior draws flowed K + kappa steps (or `steps`), clamped for images."""
        steps = self.cfg["flow_steps"] + self.cfg["refine_steps"] if steps is None else steps
        state = self.ema if weights == "ema" and self.ema is not None else None
        g = torch.Generator().manual_seed(seed)
        x = self.flow(self.current_weights(state), self.prior.sample(n, g).to(self.place.device), steps, g)
        x = x.float().cpu()
        return x.clamp(-1, 1) if self.data.value_range is not None else x

    # --- checkpoints -----------------------------------------------------------------------
    def state(self) -> dict:
        cpu = lambda d: None if d is None else {k: v.detach().cpu() for k, v in d.items()}  # noqa: E731
        return checkpoint_dict(
            self.cfg, cpu(self.model.state_dict()), cpu(self.ema), self.prior.state(), self.shape, self.data.value_range,
            self.step, optim=self.optim.state_dict(),
            scheduler={"base_lr": self.cfg["lr"], "milestones": list(self.cfg["lr_milestones"]), "gamma": self.cfg["lr_gamma"]},
            rng={"torch": self.gen.get_state(),
                 **({"flow": self.flow_gen.get_state()} if self.flow_gen is not None else {})}, source={"kind": "fdrl-train"})

    def save(self) -> None:
        if not self.place.is_main:
            return
        state = self.state()
        save_checkpoint(state, self.out / "last.pt")
        if self.cfg["keep_numbered"]:
            save_checkpoint(state, self.out / f"ckpt_{self.step:07d}.pt")

    @classmethod
    def resume(cls, ckpt: dict, out_dir, overrides: dict | None = None, quiet: bool = False) -> "Trainer":
        cfg = dict(ckpt["config"])
        for k, v in (overrides or {}).items():
            if k in ARCHITECTURE_KEYS and v != cfg[k]:
                raise TrainingError(f"cannot change '{k}' when resuming ({cfg[k]!r} -> {v!r}); start a new run")
            cfg[k] = v
        if cfg["steps"] < int(ckpt["step"]):
            raise TrainingError(f"steps={cfg['steps']} but the run is at step {ckpt['step']}: give more steps to "
                                "go on (or start a new run with --out elsewhere)")
        prior = prior_from_state(ckpt["prior"]) if PriorSpec.from_state(ckpt["prior"]).drawable else None
        t = cls(cfg, out_dir, prior=prior, quiet=quiet)
        part = "weights"
        try:  # the contract checked the types; whether they fit this model only loading tells
            t.model.load_state_dict(ckpt["model"])
            part = "optimizer state"
            if ckpt.get("optim"):
                t.optim.load_state_dict(ckpt["optim"])
                _check_optimizer_state(t.optim)
            if t.ema is not None and ckpt.get("ema") is not None:
                t.ema = {k: v.clone().to(t.place.device) for k, v in ckpt["ema"].items()}
            t.step = int(ckpt["step"])
            part = "random-generator state"
            if ckpt.get("rng"):
                t.gen.set_state(ckpt["rng"]["torch"])
                if t.flow_gen is not None and "flow" in ckpt["rng"]:
                    t.flow_gen.set_state(ckpt["rng"]["flow"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise CheckpointError(f"cannot resume: the checkpoint's {part} does not fit this run "
                                  f"({one_line(e, 160)}); the checkpoint is damaged or from another model") from None
        return t

    # --- the loop --------------------------------------------------------------------------
    def _write_grid(self) -> None:
        from fdrl_core.pictures import picture_of, save_png
        x = self.sample(self.cfg["grid_size"], seed=self.cfg["seed"] + 1)
        save_png(picture_of(x.numpy()), self.out / "samples" / f"step_{self.step:07d}.png")

    def _trim_metrics(self) -> None:
        """On resume, drop metric lines the resumed run will write again."""
        path = self.out / "metrics.jsonl"
        if path.exists():
            keep = [line for line in path.read_text(errors="replace").splitlines() if _logged_step(line) <= self.step]
            atomic_write_text(path, "".join(line + "\n" for line in keep))

    # --- the quality watch (eval_every) -----------------------------------------------------
    def _quality_watch(self):
        """fdrl_eval's watch (found by name: DESIGN.md §3), or None with a note if this install lacks it."""
        import sys

        from fdrl_core.entry import quality_watch_module
        module, why = quality_watch_module()
        if module is None:
            print(f"fdrl-train: note: the quality watch (eval_every) is off: it {why}", file=sys.stderr)
            return None
        return module.QualityWatch(self.cfg, self.cfg["eval_samples"], self.shape)

    def _best_so_far(self) -> float:
        try:
            return float(json.loads((self.out / "best.json").read_text())["value"])
        except (OSError, ValueError, KeyError, TypeError):  # none yet, or a damaged one: the next eval decides
            return math.inf

    def _evaluate(self, watch, best: float) -> tuple[dict, float]:
        """The watch's figures for this step's EMA weights; best.pt when they are the best yet."""
        from fdrl_core.atomic import atomic_write_bytes
        state = self.state()
        values, x = watch(state)
        if x is None:  # the flow diverged: nothing to judge or keep
            return values, best
        buf = io.BytesIO()
        np.savez(buf, x=x)  # the samples judged: fdrl-eval on this file gives the same figures
        atomic_write_bytes(self.out / "eval_samples.npz", buf.getvalue())
        value = values[watch.primary]
        if value < best:
            save_checkpoint(state, self.out / "best.pt")
            atomic_write_text(self.out / "best.json", json.dumps(
                {"step": self.step, "measure": watch.primary, "value": value}) + "\n")
            best = value
        return values, best

    def _plot_quality(self, watch, row: dict) -> None:
        """quality.png from the rows logged so far and this step's."""
        lines = (self.out / "metrics.jsonl").read_text(errors="replace").splitlines()
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line a killed run left half-written: not a figure
                pass
        watch.plot(rows + [row], self.out / "quality.png")

    def run(self) -> dict:
        from tqdm import tqdm
        cfg, total, main = self.cfg, self.cfg["steps"], self.place.is_main
        watch, best = self.watch, math.inf
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.out)  # a checkpoint a killed run was writing
            atomic_write_text(self.out / "config.yaml", dump_config(cfg))
            self._trim_metrics()
            if watch is not None:
                best = self._best_so_far()
        last: dict = {}
        bar = tqdm(total=total, initial=self.step, disable=self.quiet or not main, unit="step", dynamic_ncols=True)
        with open(self.out / "metrics.jsonl", "a") if main else open(os.devnull, "w") as log:
            # the prior's own figure, for scale: in the first judged row of the run
            prior_judged = watch is not None and "eval_prior_" in (self.out / "metrics.jsonl").read_text()
            t0, s0 = time.perf_counter(), self.step
            while self.step < total:
                last = self.train_step()
                bar.update(1)
                evaluated = watch is not None and self.step % cfg["eval_every"] == 0
                if evaluated:
                    t_eval = time.perf_counter()
                    if not prior_judged:
                        last.update(watch.prior_row(self.prior.state(), self.data.value_range))
                        prior_judged = True
                    values, best = self._evaluate(watch, best)
                    last.update(values)
                    self._plot_quality(watch, last)
                    # all that judging a step cost (export or refit, sampling, measure, files);
                    # steps_per_s stays training's own speed
                    last["eval_seconds"] = time.perf_counter() - t_eval
                    t0 += last["eval_seconds"]
                if self.step % cfg["log_every"] == 0 or self.step == total or evaluated:
                    dt = time.perf_counter() - t0
                    last["steps_per_s"] = (self.step - s0) / dt if dt > 0 else math.nan
                    t0, s0 = time.perf_counter(), self.step
                    log.write(json.dumps(last) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{last['loss']:.4g}", steps_s=f"{last['steps_per_s']:.2f}")
                if self.step % cfg["ckpt_every"] == 0 or self.step == total:
                    self.save()
                if main and cfg["sample_every"] and (self.step % cfg["sample_every"] == 0 or self.step == total):
                    self._write_grid()
        bar.close()
        if not last:  # nothing left to do: still leave a checkpoint
            self.save()
        if self.place.world > 1:  # the ranks must have ended in step; say so beside the checkpoint
            spread = max_weight_spread(self.place, self.model)
            if main:
                (self.out / "distributed.json").write_text(json.dumps(
                    {"world_size": self.place.world, "step": self.step, "max_weight_spread": spread}) + "\n")
            finish(self.place)
        return last

