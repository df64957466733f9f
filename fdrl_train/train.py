"""Training (paper Algorithm 1): data vs. prior samples flowed K steps with the current,
stale estimator; a Bregman loss; one Adam step; an EMA update."""
from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import torch

from .checkpoint import atomic_torch_save, checkpoint_dict
from .config import dump_config
from .datasets import Dataset, load_dataset
from .drift import DriftGraph
from .flow import GraphFlow
from .losses import get_pairing
from .models import build_model, plain_params, plain_twin
from .pictures import picture_of, save_png
from .priors import GaussianPrior, NormalPrior, Prior, UniformPrior, prior_from_state

# Keys that fix what a run is; a resumed run may change the others (steps, logging...).
ARCHITECTURE_KEYS = ("dataset", "model", "hidden_dim", "n_hidden_layers", "spectral_norm", "self_attn",
                     "loss", "divergence", "prior", "prior_std")


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a bad resume); the message says why."""


def make_prior(cfg: dict, data: Dataset) -> Prior:
    shape, bounded = data.sample_shape, data.value_range is not None
    if cfg["prior"] == "normal":
        return NormalPrior(shape, cfg["prior_std"], clamp=bounded)
    if cfg["prior"] == "up":
        return UniformPrior(shape, clamp=True)
    return GaussianPrior.fit(data.batches(), shape, clamp=bounded)


def make_flow(graph: DriftGraph, cfg: dict, image: bool) -> GraphFlow:
    """The flow as configured; image models get NHWC and one worker per core (NOTES.md)."""
    workers = cfg["flow_workers"] or (torch.get_num_threads() if image and not cfg["compile_flow"] else 1)
    return GraphFlow(graph, cfg["eta"], cfg["noise"], compile=cfg["compile_flow"], workers=workers,
                     channels_last=image)


def lr_at(cfg: dict, step: int) -> float:
    """Learning rate for 0-based step `step`: lr * gamma^(milestones <= step)."""
    return cfg["lr"] * cfg["lr_gamma"] ** sum(1 for m in cfg["lr_milestones"] if m <= step)


class Trainer:
    def __init__(self, cfg: dict, out_dir: str | os.PathLike | None, data: Dataset | None = None,
                 prior: Prior | None = None, quiet: bool = False):
        self.cfg, self.quiet = cfg, quiet
        self.out = Path(out_dir) if out_dir is not None else None
        if cfg["threads"]:
            torch.set_num_threads(cfg["threads"])
        self.data = data or load_dataset(cfg)
        self.shape = self.data.sample_shape
        torch.manual_seed(cfg["seed"])
        self.model = build_model(cfg, self.shape)
        self.loss, self.divergence = get_pairing(cfg["loss"], cfg["divergence"])
        self.prior = prior or make_prior(cfg, self.data)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]))
        self.ema = ({k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    if cfg["ema_rate"] > 0 else None)
        self.step = 0
        self.gen = torch.Generator().manual_seed(cfg["seed"])
        self.drift = DriftGraph(plain_twin(cfg, self.shape), self.divergence, self.shape)
        self.flow = make_flow(self.drift, cfg, image=len(self.shape) == 3)

    # --- one step of Algorithm 1 -------------------------------------------------------
    def current_weights(self, state: dict | None = None) -> list[torch.Tensor]:
        """The plain weights the flow uses: the live model's, or those of `state`."""
        model = self.model
        if state is not None:
            model = copy.deepcopy(self.model)
            model.load_state_dict(state)
        return self.drift.weights({k: v.detach() for k, v in plain_params(model).items()})

    def train_step(self) -> dict:
        cfg, g, b = self.cfg, self.gen, self.cfg["batch_size"]
        for group in self.optim.param_groups:
            group["lr"] = lr_at(cfg, self.step)
        x_data = self.data.sample(b, g)
        if cfg["dequant"]:
            x_data = x_data + cfg["dequant"] * torch.randn(x_data.shape, generator=g)
        if cfg["hflip"] and x_data.dim() == 4:
            flip = torch.rand(b, generator=g) < 0.5
            x_data = torch.where(flip[:, None, None, None], x_data.flip(3), x_data)
        x_flowed = self.flow(self.current_weights(), self.prior.sample(b, g), cfg["flow_steps"], g)
        self.model.train()
        out = self.model(torch.cat([x_data, x_flowed]))
        terms = self.loss(out[:b], out[b:])
        if not torch.isfinite(terms.loss):
            raise TrainingError(f"loss is {terms.loss.item()} at step {self.step + 1}; training stopped "
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
        return {"step": self.step, "loss": terms.loss.item(), "term_data": terms.term_data.item(),
                "term_flowed": terms.term_flowed.item(), "r_data": terms.r_data.item(),
                "r_flowed": terms.r_flowed.item(), "lr": lr_at(cfg, self.step - 1)}

    # --- sampling (Algorithm 2) ----------------------------------------------------------
    def sample(self, n: int, steps: int | None = None, weights: str = "ema", seed: int = 0) -> torch.Tensor:
        """n samples: prior draws flowed K + kappa steps (or `steps`), clamped for images."""
        steps = self.cfg["flow_steps"] + self.cfg["refine_steps"] if steps is None else steps
        state = self.ema if weights == "ema" and self.ema is not None else None
        g = torch.Generator().manual_seed(seed)
        x = self.flow(self.current_weights(state), self.prior.sample(n, g), steps, g)
        return x.clamp(-1, 1) if self.data.value_range is not None else x

    # --- checkpoints -----------------------------------------------------------------------
    def state(self) -> dict:
        return checkpoint_dict(
            self.cfg, self.model.state_dict(), self.ema, self.prior.state(), self.shape, self.data.value_range,
            self.step, optim=self.optim.state_dict(),
            scheduler={"base_lr": self.cfg["lr"], "milestones": list(self.cfg["lr_milestones"]), "gamma": self.cfg["lr_gamma"]},
            rng={"torch": self.gen.get_state()}, source={"kind": "fdrl-train"})

    def save(self) -> None:
        state = self.state()
        atomic_torch_save(state, self.out / "last.pt")
        if self.cfg["keep_numbered"]:
            atomic_torch_save(state, self.out / f"ckpt_{self.step:07d}.pt")

    @classmethod
    def resume(cls, ckpt: dict, out_dir, overrides: dict | None = None, quiet: bool = False) -> "Trainer":
        cfg = dict(ckpt["config"])
        for k, v in (overrides or {}).items():
            if k in ARCHITECTURE_KEYS and v != cfg[k]:
                raise TrainingError(f"cannot change '{k}' when resuming ({cfg[k]!r} -> {v!r}); start a new run")
            cfg[k] = v
        t = cls(cfg, out_dir, prior=prior_from_state(ckpt["prior"]), quiet=quiet)
        t.model.load_state_dict(ckpt["model"])
        if ckpt.get("optim"):
            t.optim.load_state_dict(ckpt["optim"])
        if t.ema is not None and ckpt.get("ema") is not None:
            t.ema = {k: v.clone() for k, v in ckpt["ema"].items()}
        t.step = int(ckpt["step"])
        if ckpt.get("rng"):
            t.gen.set_state(ckpt["rng"]["torch"])
        return t

    # --- the loop --------------------------------------------------------------------------
    def _write_grid(self) -> None:
        x = self.sample(self.cfg["grid_size"], seed=self.cfg["seed"] + 1)
        save_png(picture_of(x.numpy()), self.out / "samples" / f"step_{self.step:07d}.png")

    def _trim_metrics(self) -> None:
        """On resume, drop metric lines the resumed run will write again."""
        path = self.out / "metrics.jsonl"
        if path.exists():
            keep = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= self.step]
            path.write_text("".join(l + "\n" for l in keep))

    def run(self) -> dict:
        from tqdm import tqdm
        cfg, total = self.cfg, self.cfg["steps"]
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(dump_config(cfg))
        self._trim_metrics()
        last: dict = {}
        bar = tqdm(total=total, initial=self.step, disable=self.quiet, unit="step", dynamic_ncols=True)
        t0, s0 = time.perf_counter(), self.step
        with open(self.out / "metrics.jsonl", "a") as log:
            while self.step < total:
                last = self.train_step()
                bar.update(1)
                if self.step % cfg["log_every"] == 0 or self.step == total:
                    dt = time.perf_counter() - t0
                    last["steps_per_s"] = (self.step - s0) / dt if dt > 0 else math.nan
                    t0, s0 = time.perf_counter(), self.step
                    log.write(json.dumps(last) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{last['loss']:.4g}", steps_s=f"{last['steps_per_s']:.2f}")
                if self.step % cfg["ckpt_every"] == 0 or self.step == total:
                    self.save()
                if cfg["sample_every"] and (self.step % cfg["sample_every"] == 0 or self.step == total):
                    self._write_grid()
        bar.close()
        if not last:  # nothing left to do: still leave a checkpoint and a picture
            self.save()
        return last

