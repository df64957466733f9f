"""`fdrl-export CKPT OUT`: a checkpoint -> a self-contained, checked artifact."""
from __future__ import annotations

import contextlib
import io
import json

import click

from fdrl_core.cli import command
from fdrl_core.errors import UsageError, cli_errors
from fdrl_runtime.artifact import artifact_kind, load_artifact, reseal_onnx

from .export import ExportOptions, export, refit
from .to_onnx import quiet_exporter_logs


def print_info(path: str) -> None:
    art = load_artifact(path, with_payload=False)
    shown = art.meta.to_dict()
    shown["prior_arrays"] = {k: list(v.shape) for k, v in art.prior_arrays.items()}
    click.echo(json.dumps(shown, indent=2, sort_keys=True))


@command("fdrl-export")
@click.argument("ckpt", required=False)
@click.argument("out", required=False)
@click.option("--info", "info", metavar="ARTIFACT", help="Print an artifact's metadata and exit.")
@click.option("--reseal", "reseal", metavar="ARTIFACT.onnx",
              help="Record the digest of an .onnx you rewrote on purpose (onnxsim, onnxslim, polygraphy) and exit.")
@click.option("--refit", "refit_from", metavar="ARTIFACT.onnx",
              help="Put CKPT's weights into this exported .onnx (same architecture) without tracing again; "
                   "checked as an export is.")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default="ema", show_default=True,
              help="Which weights to export.")
@click.option("--no-check", is_flag=True, help="Skip the comparison with float64 autograd.")
@click.option("--prior", "prior", metavar="up|normal|input|FILE_ddp.pt",
              help="Override the prior (needed for reference image checkpoints).")
@click.option("--trust-pickle", is_flag=True, help="Allow unpickling a reference _ddp.pt prior file.")
@click.option("--refine-steps", type=int, help="Default kappa stored in the artifact (default: the config's).")
@click.option("--batch", default="1:64:256", show_default=True, help="TensorRT batch profile MIN:OPT:MAX.")
@click.option("--precision", type=click.Choice(("fp32", "fp16", "bf16")), default="fp32", show_default=True,
              help="TensorRT engine precision.")
@click.option("--workspace", "workspace_mb", type=int, default=4096, show_default=True, help="TensorRT workspace (MiB).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="TensorRT timing cache file (read and updated).")
@click.option("--classifier", type=click.Path(dir_okay=False), help="Compose with this classifier: a class-conditional flow.")
@click.option("--phi", type=float, default=0.1, show_default=True, help="Scale of the classifier's gradient.")
def main(ckpt, out, info, reseal, refit_from, weights, no_check, prior, trust_pickle, refine_steps, batch, precision, workspace_mb,
         timing_cache, classifier, phi):
    """Export CKPT's density-ratio estimator and its exact input gradient to OUT.

    OUT's extension picks the artifact: .onnx (ONNX), .plan/.engine (TensorRT), .pt2 (torch.export)."""
    with cli_errors("fdrl-export", "interrupted; nothing was written"):
        if info:
            print_info(info)
            return
        if reseal:
            if artifact_kind(reseal) != "onnx":
                raise UsageError(f"--reseal {reseal}: only .onnx artifacts carry a digest to reseal")
            reseal_onnx(reseal)
            click.echo(f"fdrl-export: resealed {reseal} (its metadata valid; the digest of the graph as it is now)",
                       err=True)
            return
        if not ckpt or not out:
            raise UsageError("usage: fdrl-export CKPT OUT (.onnx, .plan, .engine or .pt2), fdrl-export --refit "
                             "ARTIFACT.onnx CKPT OUT.onnx, fdrl-export --info ARTIFACT, or --reseal ARTIFACT.onnx")
        if refine_steps is not None and refine_steps < 0:
            raise UsageError(f"--refine-steps {refine_steps}: must be >= 0")
        opts = ExportOptions(weights=weights, check=not no_check, prior=prior, trust_pickle=trust_pickle,
                             refine_steps=refine_steps, batch=batch, precision=precision,
                             workspace_mb=workspace_mb, timing_cache=timing_cache, classifier=classifier, phi=phi)
        # Process-wide, so set here at the entry: torch.onnx logs and prints progress to
        # stdout; fdrl-export's own messages go to stderr.
        quiet_exporter_logs()
        with contextlib.redirect_stdout(io.StringIO()):
            if refit_from:
                result = refit(refit_from, ckpt, out, opts)
            else:
                result = export(ckpt, out, opts, log=lambda m: click.echo(m, err=True))
    check = result.describe() if result is not None else "not checked (--no-check)"
    how = f"refit from {refit_from}, " if refit_from else ""
    click.echo(f"fdrl-export: wrote {out} ({how}{weights} weights); check against float64 autograd: {check}", err=True)


if __name__ == "__main__":
    main()
