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
