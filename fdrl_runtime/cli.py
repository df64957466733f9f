"""`fdrl-infer --engine ARTIFACT -n N --out DIR`: generate samples with the lean runtime."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import click
import numpy as np

from fdrl_core.atomic import LOCK_NAME, check_writable_folder, folder_lock
from fdrl_core.cli import command
from fdrl_core.errors import UsageError, cli_errors
from fdrl_core.launch import check_count, check_device, check_threads
from fdrl_core.pictures import picture_of, save_png

from .api import Sampler, default_batch, read_init, resolve_classes
from .artifact import load_artifact, sha256_file
from .backends import NAMES as BACKENDS
from .backends import resolve_backend
from .bundled import listing, resolve_engine
from .generate import Plan, generate, shard_from_env
from .outputs import FORMATS, RunFolder

DEFAULT_SHARD = 1000
GRID_POINTS = 200_000  # --grid draws every point of a toy run, up to this many


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        try:
            return shard_from_env()
        except ValueError as e:
            raise UsageError(str(e)) from None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if n <= 0 or not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def parse_classes(one: int | None, many: str | None, artifact) -> list[int] | None:
    """--class K or --classes 0-9 / 1,3,5; a conditional artifact defaults to all classes."""
    if one is not None and many is not None:
        raise UsageError("give --class or --classes, not both")
    if many is not None:
        try:
            classes = []
            for part in many.split(","):
                lo, _, hi = part.partition("-")
                classes += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            raise UsageError(f"--classes {many!r}: expected a range or list, e.g. 0-9 or 1,3,5") from None
        if not classes:
            raise UsageError(f"--classes {many!r}: names no class")
    else:
        classes = one
    return resolve_classes(artifact, classes)


@command("fdrl-infer")
@click.option("--engine", "engine", metavar="ARTIFACT",
              help=".onnx, .plan/.engine or .pt2 from fdrl-export, or a bundled name (see --list).")
@click.option("--list", "list_", is_flag=True, help="List the pre-trained artifacts bundled with fdrl, with their quality.")
@click.option("-n", "n", type=int, help="Number of samples (default: 1000, or all of --init).")
@click.option("--out", "out", default="samples", show_default=True, help="Output folder.")
@click.option("--batch", type=int, help="Samples per batch (default: 1024 for points, 64 for images; on a GPU 1024, 256 above 32x32x3).")
@click.option("--steps", type=int, help="Flow steps (default: K + kappa from the artifact).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--backend", type=click.Choice(("auto",) + BACKENDS), default="auto", show_default=True,
              help="auto: the one for the artifact's type.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--precision", type=click.Choice(("fp32", "tf32", "bf16", "fp16")), default="fp32", show_default=True,
              help="fp32 is exact fp32; tf32 (cuDNN/cuBLAS TF32, PyTorch's default for convolutions), bf16 and fp16 "
                   "where the backend has them (a GPU).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: png for images, npz for points.")
@click.option("--grid", "grid", type=click.Path(dir_okay=False), help="Also write a picture: a grid of the first 64 images, or a scatter of all the points.")
@click.option("--shard", "shard", help="I/N: this process makes shard I of N (default: from torchrun/SLURM).")
@click.option("--shard-size", type=int, default=DEFAULT_SHARD, show_default=True, help="Samples per output shard.")
@click.option("--init", "init", help="Start the flow from these samples (.npz/.npy or an image folder) instead of the prior.")
@click.option("--class", "one_class", type=int, help="Class-conditional artifacts: make samples of this class.")
@click.option("--classes", "classes", help="Class-conditional artifacts: balanced over these, e.g. 0-9 (the default: all).")
@click.option("--threads", type=int, default=0, help="CPU workers (default: every core this process may use).")
@click.option("--overwrite", is_flag=True, help="Start over instead of completing an earlier run in --out.")
@click.option("--compile/--no-compile", "compile_", default=True, show_default=True,
              help="torch backend on a CPU: compile blocks of steps with inductor (tens of seconds once, then 2-4x faster).")
@click.option("--trust-pickle", is_flag=True, help="Load a .pt2 even if it holds pickled data (which runs code when loaded).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(engine, list_, n, out, batch, steps, seed, backend, device, precision, fmt, grid, shard, shard_size, init,
         one_class, classes, threads, overwrite, compile_, trust_pickle, quiet):
    """Generate samples: prior draw, K + kappa flow steps, clamp, write."""
    with cli_errors("fdrl-infer", "interrupted; finished shards are kept: run the same command again to complete the rest"):
        if list_:
            click.echo(listing())
            return
        if not engine:
            raise UsageError("Missing option '--engine': give an artifact (.onnx, .plan, .pt2) or a bundled name "
                             "(fdrl-infer --list shows them)")
        run(engine, n, out, batch, steps, seed, backend, device, precision, fmt, grid, shard, shard_size, init,
            threads, overwrite, quiet, one_class, classes, trust_pickle, compile_)


def run(engine, n, out, batch, steps, seed, backend, device, precision, fmt, grid, shard, shard_size, init,
        threads, overwrite, quiet, one_class=None, classes=None, trust_pickle=False, compile_=True):
    for name, value in (("-n", n), ("--batch", batch), ("--steps", steps), ("--shard-size", shard_size)):
        if value is not None:
            check_count(value, name)
    check_threads(threads)  # each worker holds a session: more than the cores only costs memory
    check_device(device)
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use png, npz or both")
    shard_index, shard_count = parse_shard(shard)
    engine = resolve_engine(engine)
    artifact = load_artifact(engine)
    name = resolve_backend(backend, artifact.kind)
    class_list = parse_classes(one_class, classes, artifact)
    init_x = read_init(init, artifact, "--init") if init else None
    if init_x is not None:
        n = n or len(init_x)
        if n > len(init_x):
            raise UsageError(f"-n {n} but --init holds {len(init_x)} samples")
    elif not artifact.prior.drawable:
        raise UsageError("this artifact has no prior (it translates given images): give --init SOURCE")
    n = n or 1000
    batch = batch or default_batch(artifact, device)
    steps = steps or artifact.default_steps
    fmt = fmt or ("png" if artifact.is_image else "npz")
    if not artifact.is_image and fmt != "npz":
        raise UsageError(f"--format {fmt}: points are written as npz")
    out_path = Path(out)
    check_writable_folder(out_path, "--out")
    if grid is not None:  # checked now, not after every sample was made
        if Path(grid).suffix.lower() != ".png":
            raise UsageError(f"--grid {grid}: the picture is a PNG; give a .png path")
        check_writable_folder(Path(grid).parent, "--grid")
    if name == "torch" and threads:  # process-wide: set at the entry, not inside the backend
        import torch
        torch.set_num_threads(threads)
    created = not out_path.exists()
    out_path.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out_path, "fdrl-infer", f"{LOCK_NAME}-{shard_index}of{shard_count}"):
            summary, result, be, owned = _generate_into(
                out_path, artifact, name, device, precision, threads, trust_pickle, fmt, overwrite, engine, seed,
                steps, class_list, init, init_x, n, shard_size, shard_index, shard_count, quiet, batch, grid, compile_)
    except BaseException:
        # A run that failed before finishing a shard leaves no empty folders behind.
        if created and not any(p.is_file() for p in out_path.rglob("*")):
            shutil.rmtree(out_path, ignore_errors=True)
        raise
    if not quiet:
        rate = summary["samples_per_second"]
        click.echo(f"fdrl-infer: {owned} samples in {out} ({result['made']} new, {result['shards_skipped']} shards kept)"
                   + (f", {rate:.1f} samples/s on {be.name}" if rate else ""), err=True)


def _generate_into(out_path, artifact, name, device, precision, threads, trust_pickle, fmt, overwrite, engine, seed,
                   steps, class_list, init, init_x, n, shard_size, shard_index, shard_count, quiet, batch, grid,
                   compile_=True):
    with Sampler(artifact, name, device=device, precision=precision, threads=threads,
                 trust_pickle=trust_pickle, compile=compile_) as sampler:
        be = sampler.backend
        folder = RunFolder(out_path, fmt, artifact.is_image)
        folder.prepare(overwrite)
        # What the samples are: a rerun must make the same ones (noise is keyed by sample id,
        # so batch and shard count do not matter; backend, compilation and precision change the numbers).
        artifact_sha = sha256_file(engine)
        folder.claim({"artifact_sha256": artifact_sha, "seed": seed, "steps": steps, "format": fmt,
                      "backend": be.numerics, "precision": precision, "classes": class_list,
                      "init": None if init is None else {"path": str(Path(init).resolve()),
                                                         "sha256": _init_digest(init_x)}}, n, shard_size)
        plan = Plan(n, shard_size, shard_index, shard_count)
        from tqdm import tqdm
        owned = plan.owned()
        bar = tqdm(total=owned, disable=quiet, unit="sample", dynamic_ncols=True)
        bar.update(sum(plan.size(s) for s in plan.shard_numbers() if folder.is_done(s)))

        def progress(k, rate):
            bar.update(k)
            bar.set_postfix(samples_s=f"{rate:.1f}")

        t0 = time.perf_counter()
        result = generate(sampler, plan, folder, batch, steps, seed, init_x, progress,
                          keep_first=(64 if artifact.is_image else GRID_POINTS) if grid else 0, classes=class_list)
        bar.close()
        summary = {
            "count": owned, "made_now": result["made"], "n_total": n, "seed": seed, "backend": be.name,
            "device": device, "precision": precision, "batch": batch, "steps": steps,
            "seconds": result["seconds"], "wall_seconds": time.perf_counter() - t0,
            "samples_per_second": result["made"] / result["seconds"] if result["seconds"] > 0 else None,
            "shard": [shard_index, shard_count], "shards_done": result["shards_done"],
            "shards_kept": result["shards_skipped"], "artifact": str(engine), "artifact_sha256": artifact_sha,
            "init": init, "classes": class_list,
        }
        folder.write_summary("summary.json" if shard_count == 1 else f"summary_{shard_index}of{shard_count}.json", summary)
        if grid and result["first"] is not None:
            save_png(picture_of(result["first"], artifact.value_range or (-1.0, 1.0)), grid)
    return summary, result, be, owned


def _init_digest(x: np.ndarray) -> str:
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


if __name__ == "__main__":
    main()
