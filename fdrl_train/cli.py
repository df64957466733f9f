"""`fdrl-train`: train an FDRL model from a YAML config, or resume a run."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import click

from fdrl_core.atomic import LOCK_NAME, check_writable_folder, folder_lock
from fdrl_core.cli import command
from fdrl_core.errors import UsageError, cli_errors
from fdrl_core.launch import LAUNCHERS, launch_place

from .checkpoint import load_checkpoint
from .config import dump_config, load_config, parse_override
from .train import FLOW_KEYS, Trainer


@command("fdrl-train")
@click.option("--config", "config", metavar="FILE|NAME", help="YAML config, or a bundled one: swissroll, mnist, ...")
@click.option("--out", "out", type=click.Path(file_okay=False), help="Run folder (checkpoints, metrics, samples).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--resume", "resume", type=click.Path(), help="Continue the run in this folder from its last.pt.")
@click.option("--overwrite", is_flag=True, help="Start over in an --out folder that already holds a run.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.argument("more_overrides", nargs=-1, metavar="[KEY=VALUE]...")
def main(config, out, overrides, resume, overwrite, dry_run, quiet, more_overrides):
    """Train a density-ratio estimator with FDRL (Algorithm 1 of the paper).

    Overrides go after --set, as many as needed: --set steps=500 lr=1e-4."""
    overrides = tuple(overrides) + tuple(more_overrides)
    with cli_errors("fdrl-train", "interrupted; the last checkpoint is intact: --resume continues"), \
            contextlib.ExitStack() as held:
        if resume:
            if config:
                raise UsageError("give --config or --resume, not both (a resumed run keeps its config; change keys with --set)")
            ckpt = load_checkpoint(Path(resume) / "last.pt" if Path(resume).is_dir() else resume)
            changes = dict(parse_override(o) for o in overrides)
            cfg = {**ckpt["config"], **changes}
            from .config import validate
            validate(cfg)
            out = out or (resume if Path(resume).is_dir() else str(Path(resume).parent))
            if dry_run:
                click.echo(dump_config(cfg))
                return
            _lock(held, Path(out))
            set_process_state(cfg)
            trainer = Trainer.resume(ckpt, out, changes, quiet=quiet)
            for key, why in FLOW_KEYS.items():
                if key in changes and changes[key] != ckpt["config"][key]:
                    click.echo(f"fdrl-train: note: {key} {ckpt['config'][key]!r} -> {changes[key]!r} from step "
                               f"{ckpt['step']} on; {why}", err=True)
        else:
            if not config:
                raise UsageError("give --config FILE (or a bundled name such as swissroll), or --resume DIR")
            cfg = load_config(config, overrides)
            if dry_run:
                click.echo(dump_config(cfg))
                return
            if not out:
                raise UsageError("give --out DIR for the run's checkpoints, metrics and samples")
            out_path = Path(out)
            if (out_path / "last.pt").exists() and not overwrite:
                raise UsageError(f"{out} already holds a run (last.pt): --resume {out} continues it, --overwrite starts over")
            _lock(held, out_path)
            if (out_path / "last.pt").exists():  # --overwrite: all of the old run goes, the lock stays
                for p in out_path.iterdir():
                    if p.name != LOCK_NAME:
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            set_process_state(cfg)
            trainer = Trainer(cfg, out, quiet=quiet)
        if not quiet:
            click.echo(f"fdrl-train: {cfg['dataset']} {cfg['model']} {cfg['loss']}-{cfg['divergence']} "
                       f"prior={cfg['prior']} K={cfg['flow_steps']} steps {trainer.step}->{cfg['steps']} -> {out}",
                       err=True)
        last = trainer.run()
    if last and not quiet:
        click.echo(f"fdrl-train: done at step {last['step']}, loss {last['loss']:.5g}; checkpoint {Path(out) / 'last.pt'}",
                   err=True)


def _lock(held: contextlib.ExitStack, out: Path) -> None:
    """One fdrl-train per run folder (rank 0 holds it for a torchrun job)."""
    if launch_place(launchers=LAUNCHERS[:1]).rank == 0:
        created = not out.exists()
        check_writable_folder(out, "--out")
        out.mkdir(parents=True, exist_ok=True)
        held.enter_context(folder_lock(out, "fdrl-train"))

        def remove_if_empty(exc_type, exc, tb):
            """A run that failed before its first checkpoint leaves no folder behind it."""
            if exc_type is not None and created and not (out / "last.pt").exists():
                shutil.rmtree(out, ignore_errors=True)
            return False
        held.push(remove_if_empty)


def set_process_state(cfg: dict) -> None:
    """What is process-wide (torch's thread count) is set here, at the entry, and nowhere else."""
    if cfg["threads"]:
        import torch

        from fdrl_core.launch import check_threads
        check_threads(cfg["threads"], "config key 'threads':")
        torch.set_num_threads(cfg["threads"])


if __name__ == "__main__":
    main()
