"""`fdrl-bench`: flow-step latency and sampling throughput, side by side, against the
machine's matrix-multiply peak; `fdrl-bench --train CONFIG` times training steps.

Every row runs the same model, batch and number of steps; rows are measured in one
process, interleaved (A B C A B C ...) after a warm-up, so a noisy machine slows all of
them alike. Rows: the reference-style eager loop (reference_loop.py), fdrl-train's flow
(its traced drift graph, eager and torch.compile'd), and the runtime's backends on the
exported artifact.
"""
from __future__ import annotations

import copy
import json
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np

from fdrl_core.atomic import atomic_write_text, check_output_file
from fdrl_core.cli import command
from fdrl_core.errors import FdrlError, cli_errors
from fdrl_core.launch import available_cores, check_device, check_threads

ROW_KINDS = ("eager", "graph", "compile", "onnxruntime", "torch", "tensorrt")


class BenchError(FdrlError, ValueError):
    pass


@dataclass
class Row:
    name: str
    batch: int
    precision: str = "fp32"
    seconds: list[float] = field(default_factory=list)  # per call of `steps` flow steps
    peak_rss_mb: float = 0.0

    def step_ms(self, steps: int) -> tuple[float, float, float]:
        t = np.array(self.seconds) / steps * 1e3
        return float(np.median(t)), float(t.min()), float(t.max())

    def percentiles_ms(self, steps: int) -> tuple[float, float, float]:
        """p50, p90, p99 of the per-step time (linear interpolation between repeats)."""
        t = np.array(self.seconds) / steps * 1e3
        return tuple(float(v) for v in np.percentile(t, [50, 90, 99]))


def matmul_peak_gflops(seconds: float = 0.25, device: str = "cpu", precision: str = "fp32") -> float:
    """The best GEMM throughput of `device` now, in the rows' precision. CPU: fp32 through
    numpy's BLAS and torch (when installed), 1024^2 and 2048^2 (on the 2-core VMs these reach
    the 4096^2 figure within noise, 156-173 GFLOP/s, at a tenth of the time: NOTES.md session 8;
    a lower bound of the true peak: a tuned convolution can beat it; MLAS reaches ~110% on
    the CIFAR ResNet). GPU:
    torch on that device at 8192^2 in bf16 / fp16 (or fp32 with TF32 as `precision` says),
    timed with synchronisation: the peak a GPU row is a fraction of."""
    if device != "cpu":
        return _device_peak_gflops(device, precision, seconds)
    libs = [("numpy", np.matmul, lambda n: np.random.randn(n, n).astype(np.float32))]
    try:
        import torch
        libs.append(("torch", torch.mm, lambda n: torch.randn(n, n)))
    except ImportError:
        pass
    best = 0.0
    for _, mm, make in libs:
        for n in (1024, 2048):
            a, b = make(n), make(n)
            mm(a, b)
            t_end = time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                mm(a, b)
                best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def _device_peak_gflops(device: str, precision: str, seconds: float) -> float:
    import torch
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        n = 8192
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        torch.mm(a, b)
        torch.cuda.synchronize(device)
        best, t_end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            for _ in range(5):
                torch.mm(a, b)
            torch.cuda.synchronize(device)
            best = max(best, 5 * 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
        return best
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- the runners: each returns a callable that runs `steps` flow steps on one batch ----------

def runtime_runner(artifact_path, backend: str, precision: str, device: str, batch: int, steps: int, threads: int):
    from fdrl_runtime.artifact import load_artifact
    from fdrl_runtime.backends import backend_class
    from fdrl_runtime.loop import sample_batch
    art = load_artifact(artifact_path)
    be = backend_class(backend)(art, device=device, precision=precision, threads=threads)
    ids = np.arange(batch, dtype=np.int64)
    state = {"seed": 0}

    def run():
        state["seed"] += 1
        sample_batch(be, art, ids, state["seed"], steps)
    return run, be


def torch_runners(ckpt: dict, kinds, batch: int, steps: int, weights: str = "ema", device: str = "cpu"):
    """eager (reference-style, PyTorch's defaults), graph (fdrl-train's flow) and compile
    (the same, fused), on `device`; on a GPU also the reference with one line of autocast
    bf16 and with channels_last as well (the best a user gets by hand). Each call ends
    synchronised, so a timer around it times the device's work."""
    import torch

    from fdrl_export.graph import estimator_from_checkpoint
    from fdrl_train.drift import DriftGraph
    from fdrl_train.losses import get_pairing
    from fdrl_train.priors import prior_from_state
    from fdrl_train.train import make_flow

    from .reference_loop import reference_flow
    est = estimator_from_checkpoint(ckpt, weights if ckpt.get("ema") is not None else "raw")
    cfg = est.cfg
    prior = prior_from_state(ckpt["prior"]) if ckpt.get("prior") else None
    g = torch.Generator().manual_seed(0)
    dev = torch.device(device)

    def x0():
        x = prior.sample(batch, g) if prior is not None else torch.rand((batch,) + est.sample_shape, generator=g) * 2 - 1
        return x.to(dev)

    def synced(run):
        if dev.type != "cuda":
            return run
        return lambda: (run(), torch.cuda.synchronize(dev))

    runners = {}
    if "eager" in kinds:
        model = est.model.to(dev).train()
        for p in model.parameters():
            p.requires_grad_(True)
        ref = lambda m=model, cl=False: reference_flow(  # noqa: E731
            m, x0().contiguous(memory_format=torch.channels_last) if cl else x0(), steps, cfg["eta"], cfg["noise"],
            cfg["divergence"])
        runners["eager"] = synced(ref)
        if dev.type == "cuda":  # what a user of the reference gets with one line, then two
            def autocast(run):
                def go():
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        return run()
                return go
            runners["eager + autocast bf16"] = synced(autocast(ref))
            if len(est.sample_shape) == 3:
                model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
                runners["eager + autocast bf16 + channels_last"] = synced(autocast(lambda: ref(model_cl, True)))
    _, divergence = get_pairing(cfg["loss"], cfg["divergence"])
    for kind in ("graph", "compile"):
        if kind in kinds:  # fdrl-train's flow, as make_flow sets it up for this model
            graph = DriftGraph(est.twin(), divergence, est.sample_shape)
            flow = make_flow(graph, {**cfg, "compile_flow": kind == "compile", "flow_workers": 0},
                             image=len(est.sample_shape) == 3)
            w = graph.weights({k: v.to(dev) for k, v in est.params.items()})
            runners[kind] = synced(lambda f=flow, w=w: f(w, x0(), steps, g))
    return runners


def interleave(runners: dict, rows: dict[str, Row], repeats: int, warmup_s: float = 1.0) -> None:
    """Each row warmed up for `warmup_s` seconds (at least two calls: compile, capture,
    allocate, and the clock settling), then the rows timed in turn, `repeats` rounds."""
    for name, run in runners.items():
        t_end, calls = time.perf_counter() + warmup_s, 0
        while calls < 2 or time.perf_counter() < t_end:
            run()
            calls += 1
        rows[name].peak_rss_mb = _rss_mb()
    for _ in range(repeats):
        for name, run in runners.items():
            # One untimed call first: on these VMs a call right after another row's work
            # ran up to 1.7x slower (clock and cache state, NOTES.md), whichever row it was.
            run()
            t0 = time.perf_counter()
            run()
            rows[name].seconds.append(time.perf_counter() - t0)


def markdown(rows: list[Row], steps: int, total_steps: int, flops: int | None, peak: float, baseline: str | None) -> str:
    head = ("| row | batch | step ms p50 | p90 | p99 | min | max | samples/s (K+κ steps) | GFLOP/s | of peak "
            "| vs eager | peak RSS MB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = {r.batch: r.step_ms(steps)[0] for r in rows if r.name == baseline}
    lines = [head]
    for r in rows:
        med, lo, hi = r.step_ms(steps)
        _, p90, p99 = r.percentiles_ms(steps)
        sps = r.batch / (med / 1e3 * total_steps)
        gf = flops * r.batch / (med / 1e3) / 1e9 if flops else None
        ratio = base[r.batch] / med if r.batch in base else None
        lines.append(f"| {r.name} | {r.batch} | {med:.3f} | {p90:.3f} | {p99:.3f} | {lo:.3f} | {hi:.3f} | {sps:,.1f} | "
                     + (f"{gf:.1f} | {100 * gf / peak:.0f}% | " if gf else "– | – | ")
                     + (f"{ratio:.2f}× | " if ratio else "– | ") + f"{r.peak_rss_mb:.0f} |")
    return "\n".join(lines)


def machine_name(device: str = "cpu") -> str:
    """'<CPU model>, N cores' (or the GPU's name for --device cuda), for tables and plot titles."""
    if device != "cpu":
        import torch
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {available_cores()} cores"


def checkpoint_for(meta, given: str | None):
    """The checkpoint an artifact was exported from: --checkpoint, or the path the artifact
    records, either one only if its SHA-256 is the one recorded. (path, None) or (None, why)."""
    from fdrl_runtime.artifact import sha256_file
    want = meta.source.get("checkpoint_sha256")
    candidates = [given] if given else [meta.source.get("checkpoint")]
    for c in candidates:
        if not c:
            return None, "the artifact records no checkpoint path: give --checkpoint CKPT"
        if not Path(c).is_file():
            if given:
                raise BenchError(f"--checkpoint {c}: no such file")
            return None, f"the checkpoint it was exported from, {c}, is not there: give --checkpoint CKPT"
        if want and sha256_file(c) != want:
            msg = (f"{c} is not the checkpoint this artifact was exported from (SHA-256 differs from the "
                   f"recorded {want[:12]}...)")
            if given:
                raise BenchError(msg + ": give that checkpoint, or leave --checkpoint out")
            return None, msg + ": give --checkpoint CKPT"
        return Path(c), None
    return None, "no checkpoint"


def parse_list(text: str, what: str, cast=str):
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [cast(t) for t in items]
    except ValueError:
        raise BenchError(f"--{what} {text!r}: expected a comma-separated list") from None
    if not values:
        raise BenchError(f"--{what} is empty")
    return values


def random_checkpoint(model: str, seed: int = 0) -> dict:
    """Random weights in the paper's architecture for `model`, at its dataset's shape."""
    import torch

    from fdrl_train.checkpoint import checkpoint_dict
    from fdrl_train.config import load_config
    from fdrl_train.models import build_model
    preset = {"mlp": "swissroll", "resnet8": "digits", "resnet28": "mnist", "resnet32": "cifar10",
              "resnet64": "celeba", "resnet64_shallow": "cat2dog", "resnet128": "lsun_church"}
    if model not in preset:
        raise BenchError(f"--model {model!r}: use one of {', '.join(preset)}")
    cfg = load_config(preset[model])
    shape = {"mlp": (2,), "resnet8": (1, 8, 8), "resnet28": (1, 28, 28), "resnet32": (3, 32, 32),
             "resnet64": (3, 64, 64), "resnet64_shallow": (3, 64, 64), "resnet128": (3, 128, 128)}[model]
    torch.manual_seed(seed)
    m = build_model(cfg, shape)
    image = len(shape) == 3
    prior = ({"kind": "up", "shape": list(shape), "clamp": True} if image
             else {"kind": "normal", "shape": list(shape), "clamp": False, "std": 1.0})
    return checkpoint_dict(cfg, m.state_dict(), m.state_dict(), prior, shape, (-1.0, 1.0) if image else None, 0,
                           source={"kind": "random"})


@command("fdrl-bench")
@click.argument("target", required=False)
@click.option("--model", "model", help="Bench random weights of this architecture (mlp, resnet28, resnet32, ...).")
@click.option("--backends", default="eager,graph,compile,onnxruntime,torch", show_default=True,
              help=f"Rows, comma-separated: {', '.join(ROW_KINDS)}.")
@click.option("--batch", "batches", default="", help="Batch sizes, e.g. 1,16,64 (default: 1024 for points, 16 for images).")
@click.option("--precision", "precisions", default="fp32", show_default=True, help="Runtime precisions, comma-separated.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--steps", type=int, default=20, show_default=True, help="Flow steps per timed call.")
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--warmup", "warmup_s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds of untimed calls per row before timing (at least two calls).")
@click.option("--checkpoint", "checkpoint", type=click.Path(dir_okay=False),
              help="With an ARTIFACT: the checkpoint it was exported from, for the eager/graph/compile rows "
                   "(default: the path the artifact records, if its SHA-256 matches).")
@click.option("--threads", type=int, default=0, help="CPU workers for the runtime (default: its own choice).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the rows as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="PNG: samples/s against batch size per row.")
@click.option("--train", "train_config", help="Time training steps of this config against the reference loop.")
@click.option("--set", "overrides", multiple=True, help="With --train: config overrides key=value.")
def main(target, model, backends, batches, precisions, device, steps, repeats, warmup_s, checkpoint, threads,
         json_path, plot_path, train_config, overrides):
    """Benchmark an artifact (ARTIFACT), a checkpoint (CKPT) or random weights (--model)."""
    with cli_errors("fdrl-bench"):
        from fdrl_export.to_onnx import quiet_exporter_logs
        quiet_exporter_logs()  # process-wide, so here at the entry
        if train_config:
            return bench_training(train_config, overrides, repeats, warmup_s)
        run_bench(target, model, backends, batches, precisions, device, steps, repeats, threads, json_path, plot_path,
                  warmup_s, checkpoint)


def run_bench(target, model, backends, batches, precisions, device, steps, repeats, threads, json_path, plot_path,
              warmup_s=1.0, checkpoint=None):
    check_device(device)
    if device != "cpu":
        import torch
        if not torch.cuda.is_available():
            raise BenchError(f"--device {device}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    check_threads(threads)
    for flag, path in (("--json", json_path), ("--plot", plot_path)):
        if path:  # checked before minutes of timing, not after
            check_output_file(path, flag)
    # torch rows keep torch's own thread count: one setting for every row, side by side
    kinds = parse_list(backends, "backends")
    unknown = [k for k in kinds if k not in ROW_KINDS]
    if unknown:
        raise BenchError(f"unknown backend '{unknown[0]}'; use {', '.join(ROW_KINDS)}")
    precs = parse_list(precisions, "precision")
    if steps <= 0 or repeats <= 0:
        raise BenchError("--steps and --repeats must be positive")
    if bool(target) == bool(model):
        raise BenchError("give an ARTIFACT or CKPT, or --model NAME (one of them)")
    given_batches = parse_list(batches, "batch", int) if batches else None  # named before any export
    if given_batches and any(b <= 0 for b in given_batches):
        raise BenchError("--batch sizes must be positive")
    tmp = tempfile.TemporaryDirectory()
    ckpt, artifacts, skipped = None, {}, []
    if model or Path(target).suffix == ".pt":
        import torch

        from fdrl_export.export import ExportOptions, export
        if model:
            ckpt = random_checkpoint(model)
            src = Path(tmp.name) / "random.pt"
            torch.save(ckpt, src)
        else:
            from fdrl_train.checkpoint import load_checkpoint
            src, ckpt = Path(target), load_checkpoint(target)
        for kind, ext in (("onnxruntime", "onnx"), ("torch", "pt2")):
            if kind in kinds:
                artifacts[kind] = Path(tmp.name) / f"model.{ext}"
                export(src, artifacts[kind], ExportOptions(check=False))
    else:
        from fdrl_runtime.artifact import load_artifact
        from fdrl_runtime.backends import FOR_KIND
        art = load_artifact(target, with_payload=False)
        artifacts[FOR_KIND[art.kind]] = Path(target)
        wanted = [k for k in kinds if k in ("eager", "graph", "compile")]
        if wanted:
            found, why = checkpoint_for(art.meta, checkpoint)
            if found is not None:
                from fdrl_train.checkpoint import load_checkpoint
                ckpt = load_checkpoint(found)
                click.echo(f"fdrl-bench: rows {', '.join(wanted)} from the checkpoint {found} "
                           "(its SHA-256 is the artifact's)", err=True)
            else:
                skipped.append(f"rows {', '.join(wanted)} skipped: {why}")
        runnable = [k for k in kinds if k in artifacts or (ckpt is not None and k in ("eager", "graph", "compile"))]
        skipped += [f"{k} rows need a {'.plan' if k == 'tensorrt' else '.pt2' if k == 'torch' else '.onnx'} artifact, "
                    f"not {Path(target).name}" for k in kinds if k not in runnable and k in FOR_KIND.values()]
        kinds = runnable
    from fdrl_runtime.artifact import load_artifact
    meta = load_artifact(next(iter(artifacts.values())), with_payload=False).meta if artifacts else None
    shape = meta.sample_shape if meta else tuple(ckpt["sample_shape"])
    batch_list = given_batches or [16 if len(shape) == 3 else 1024]
    flops = meta.flops_per_sample if meta else None
    total = meta.default_steps if meta else ckpt["config"]["flow_steps"] + ckpt["config"]["refine_steps"]
    peak = matmul_peak_gflops(device=device, precision=precs[0])
    peak_label = f"{'fp32' if device == 'cpu' else precs[0]} matmul peak of {device}"
    rows: list[Row] = []
    for b in batch_list:
        runners, row_map, closers = {}, {}, []
        if ckpt is not None:
            for name, run in torch_runners(ckpt, kinds, b, steps, device=device).items():
                runners[name] = run
        for kind in ("onnxruntime", "torch", "tensorrt"):
            if kind in kinds and kind in artifacts:
                for prec in precs:
                    try:
                        run, be = runtime_runner(artifacts[kind], kind, prec, device, b, steps, threads)
                    except Exception as e:
                        from fdrl_runtime.backends import BackendError
                        if isinstance(e, BackendError):
                            skipped.append(f"skipping {kind} {prec}: {e}")
                            continue
                        raise
                    label = f"runtime {kind}" + (f" {prec}" if prec != "fp32" else "")
                    runners[label] = run
                    closers.append(be)
        for name in runners:
            row_map[name] = Row(name, b, "fp32")
        interleave(runners, row_map, repeats, warmup_s)
        rows.extend(row_map.values())
        for be in closers:
            be.close()
    if not rows:  # one line: why each was skipped
        raise BenchError(f"no row could run ({'; '.join(dict.fromkeys(skipped)) or 'no backend left'}): "
                         "e.g. --precision fp32 or another --backends")
    for note in dict.fromkeys(skipped):
        click.echo(f"fdrl-bench: {note}", err=True)
    base = "eager" if any(r.name == "eager" for r in rows) else None
    model_name = meta.model if meta else ckpt["config"]["model"]
    settings = (f"{model_name} {shape}, {flops or '?'} FLOP per sample-step; {steps} steps per call, "
                f"{repeats} repeats after {warmup_s:g} s warm-up; samples/s for {total} steps")
    click.echo(f"machine: {machine_name(device)}, {peak_label} {peak:.0f} GFLOP/s; model {settings}")
    click.echo(markdown(rows, steps, total, flops, peak, base))
    fastest = min(rows, key=lambda r: r.step_ms(steps)[0] / r.batch)
    click.echo(f"\nfastest per sample: {fastest.name} at batch {fastest.batch}")
    if json_path:
        atomic_write_text(json_path, json.dumps({"peak_gflops": peak, "flops_per_sample": flops, "steps": steps,
                                               "rows": [asdict(r) for r in rows]}, indent=2))
    if plot_path:
        _plot(rows, steps, total, plot_path, f"fdrl-bench: {model_name} on {machine_name(device)}",
              f"{device}, {peak_label} {peak:.0f} GFLOP/s; {steps} steps per call, {repeats} repeats, "
              f"samples/s for {total} steps")
    tmp.cleanup()


def _plot(rows, steps, total, path, title: str, subtitle: str):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install 'fdrl[eval]'") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r.name for r in rows):
        pts = sorted((r.batch, r.batch / (r.step_ms(steps)[0] / 1e3 * total)) for r in rows if r.name == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("batch"), ax.set_ylabel("samples/s")
    fig.suptitle(title, fontsize=9), ax.set_title(subtitle, fontsize=7)
    ax.legend(fontsize=7), fig.tight_layout()
    from fdrl_core.atomic import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def bench_training(config: str, overrides, repeats: int, warmup_s: float = 1.0) -> None:
    """Training steps/s of fdrl-train (as configured) against the reference-style training
    step and against fdrl-train with the flow's compilation flipped (compile_flow: the same
    step with its flow through torch.compile, or not), same model, batch and K."""
    import torch

    from fdrl_train.config import load_config
    from fdrl_train.train import Trainer

    from .reference_loop import ReferenceTrainStep
    cfg = load_config(config, list(overrides))
    cfg["sample_every"] = 0
    trainer = Trainer(cfg, None, quiet=True)
    flipped = Trainer({**cfg, "compile_flow": not cfg["compile_flow"]}, None, quiet=True)
    flipped.model.load_state_dict(trainer.model.state_dict())
    torch.manual_seed(cfg["seed"])
    from fdrl_train.models import build_model
    ref_model = build_model(cfg, trainer.shape)
    ref_model.load_state_dict(trainer.model.state_dict())
    g = torch.Generator().manual_seed(1)
    ref = ReferenceTrainStep(ref_model, lambda b: trainer.data.sample(b, g), lambda b: trainer.prior.sample(b, g), cfg)
    other = f"fdrl-train, compile_flow={str(not cfg['compile_flow']).lower()}"
    rows = {k: Row(k, cfg["batch_size"]) for k in ("reference-style", "fdrl-train", other)}
    interleave({"reference-style": ref, "fdrl-train": trainer.train_step, other: flipped.train_step}, rows, repeats,
               warmup_s)
    ref_s = float(np.median(rows["reference-style"].seconds))
    click.echo(f"training steps: {cfg['dataset']} {cfg['model']} batch {cfg['batch_size']} K={cfg['flow_steps']} "
               f"compile_flow={cfg['compile_flow']} (fdrl-train's row), {repeats} interleaved repeats")
    click.echo("| loop | steps/s (median) | s/step min | s/step max | vs reference |\n| --- | ---: | ---: | ---: | ---: |")
    for r in rows.values():
        med = float(np.median(r.seconds))
        click.echo(f"| {r.name} | {1 / med:.3f} | {min(r.seconds):.4f} | {max(r.seconds):.4f} | {ref_s / med:.2f}× |")


if __name__ == "__main__":
    main()
