"""fdrl-bench: rows side by side with ratios and peak fraction; bad input."""
import json

import pytest
from conftest import assert_user_error, run_cli


def test_bench_rows_ratios_and_json(tmp_path):
    p = run_cli("fdrl_bench.cli", "--model", "mlp", "--backends", "eager,graph,onnxruntime,torch", "--batch", "64,128",
                "--steps", "3", "--repeats", "2", "--json", str(tmp_path / "b.json"))
    assert p.returncode == 0, p.stderr
    rows = [l for l in p.stdout.splitlines() if l.startswith("| ") and "batch" not in l and "---" not in l]
    assert len(rows) == 8
    assert all("×" in r and "%" in r for r in rows)  # ratio to eager and fraction of peak on every row
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["peak_gflops"] > 0 and data["flops_per_sample"] > 0
    assert {r["name"] for r in data["rows"]} == {"eager", "graph", "runtime onnxruntime", "runtime torch"}
    assert all(len(r["seconds"]) == 2 for r in data["rows"])
    assert "fastest per sample" in p.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--model", "mlp", "--backends", "tpu"], "unknown backend"),
    (["--model", "mlp", "--batch", "0"], "--batch"),
    (["--model", "mlp", "--batch", "a,b"], "--batch"),
    (["--model", "vgg"], "--model"),
    (["/nonexistent/model.onnx"], "does not exist"),
    ([], "ARTIFACT"),
])
def test_bad_input(args, fragment):
    assert_user_error(run_cli("fdrl_bench.cli", *args), fragment)


def test_bench_on_an_artifact_finds_its_checkpoint(tmp_path):
    """fdrl-bench ARTIFACT: the reference rows come from the checkpoint the artifact records
    (by path and SHA-256); with it gone, the runtime row alone, and the reason said."""
    import torch

    from fdrl_bench.cli import random_checkpoint
    torch.save(random_checkpoint("mlp"), tmp_path / "ck.pt")
    assert run_cli("fdrl_export.cli", str(tmp_path / "ck.pt"), str(tmp_path / "m.onnx"), "--no-check").returncode == 0
    args = ["--batch", "32", "--steps", "2", "--repeats", "3", "--warmup", "0", "--backends", "eager,onnxruntime"]
    p = run_cli("fdrl_bench.cli", str(tmp_path / "m.onnx"), *args, "--plot", str(tmp_path / "p.png"))
    assert p.returncode == 0, p.stderr
    rows = {l.split("|")[1].strip(): l for l in p.stdout.splitlines() if l.startswith("| ") and "---" not in l}
    assert {"eager", "runtime onnxruntime"} <= set(rows), p.stdout
    assert "1.00×" in rows["eager"] and "×" in rows["runtime onnxruntime"]
    assert "p90" in rows["row"] and "p99" in rows["row"]
    assert (tmp_path / "p.png").stat().st_size > 1000
    (tmp_path / "ck.pt").rename(tmp_path / "moved.pt")
    p = run_cli("fdrl_bench.cli", str(tmp_path / "m.onnx"), *args)
    assert p.returncode == 0 and "is not there: give --checkpoint" in p.stderr, p.stderr
    assert "| eager" not in p.stdout and "| runtime onnxruntime" in p.stdout
    p = run_cli("fdrl_bench.cli", str(tmp_path / "m.onnx"), *args, "--checkpoint", str(tmp_path / "moved.pt"))
    assert p.returncode == 0 and "| eager" in p.stdout, p.stderr
    torch.save(random_checkpoint("mlp", seed=1), tmp_path / "other.pt")
    assert_user_error(run_cli("fdrl_bench.cli", str(tmp_path / "m.onnx"), *args, "--checkpoint",
                              str(tmp_path / "other.pt")), "not the checkpoint this artifact was exported from")
    assert_user_error(run_cli("fdrl_bench.cli", str(tmp_path / "m.onnx"), *args, "--checkpoint",
                              str(tmp_path / "gone.pt")), "--checkpoint", "no such file")


def test_bench_training_rows_side_by_side():
    """fdrl-bench --train: fdrl-train's step beside the reference-style step and beside itself
    with the flow's compilation flipped, each with a ratio to the reference."""
    p = run_cli("fdrl_bench.cli", "--train", "swissroll", "--set", "batch_size=64", "--set", "flow_steps=4",
                "--repeats", "2", "--warmup", "0")
    assert p.returncode == 0, p.stderr
    rows = {l.split("|")[1].strip(): l for l in p.stdout.splitlines() if l.startswith("| ") and "---" not in l
            and "steps/s" not in l}
    assert set(rows) == {"reference-style", "fdrl-train", "fdrl-train, compile_flow=false"}
    assert rows["reference-style"].rstrip().endswith("| 1.00× |")
    assert all(float(r.split("|")[2]) > 0 for r in rows.values())


def test_cpu_tables_script_regenerates_the_results_tables(tmp_path):
    """benchmarks/cpu_tables.sh --small: every fdrl-bench run of RESULTS.md's CPU tables, at toy
    sizes, spliced between the markers of a results file; the text around them kept."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    results = tmp_path / "RESULTS.md"
    results.write_text("# head\n<!-- cpu-tables:start -->\nold tables\n<!-- cpu-tables:end -->\ntail\n")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONWARNINGS": "ignore"}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "cpu_tables.sh"), "--small", str(tmp_path / "out"),
                        str(results)], capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=900)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    text = results.read_text()
    assert text.startswith("# head\n<!-- cpu-tables:start -->\n") and text.endswith("<!-- cpu-tables:end -->\ntail\n")
    assert "old tables" not in text
    for title in ("toy MLP", "MNIST ResNet", "CIFAR-10 ResNet", "Training step: swiss roll"):
        assert f"### Flow step: {title}" in text or f"### {title}" in text, title
    assert text.count("| runtime onnxruntime |") >= 3 and "| fdrl-train |" in text
    assert "    fdrl-bench --model mlp --batch 64" in text  # each table under the command that made it
