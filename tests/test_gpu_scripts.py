"""The scripts meant for a lent GPU, run here as their CPU dry run (--small), so that
they cannot rot unseen between the rare sessions that have a GPU: every row comes out as
it is measured, a failing row is one line, SIGTERM still prints the table."""
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
       "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}


def table_rows(text):
    return [l for l in text.splitlines()
            if l.startswith("| ") and not l.startswith(("| row ", "| loop ", "| --- "))]


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.slow
def test_gpu_check_dry_run_streams_rows_and_survives_a_failing_row(tmp_path):
    env = {**ENV, "OUT": str(tmp_path), "GPU_CHECK_FAIL_ROW": "end to end"}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--small", "--repeats", "1",
                        "--train-steps", "3"], capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    out = p.stdout
    final = out.index("gpu_check (complete")
    streamed, table = table_rows(out[:final]), table_rows(out[final:])
    # each row came out as it was measured, before the table (which adds what later rows measured)
    assert [cells(l)[:4] for l in streamed] == [cells(l)[:4] for l in table]
    assert out.strip().splitlines()[-1].startswith("|")  # the table is printed last
    names = [cells(l)[0] for l in table]
    for row in ("cifar10: reference loop fp32, PyTorch defaults", "cifar10: fp32 without TF32",
                "cifar10: torch.compile of the exported step", "cifar10: ONNX Runtime fp32 (CPU provider)",
                "cifar10: training: reference-style step", "cifar10: training: fdrl-train fp32",
                "mnist: reference loop fp32", "mnist: fp32 without TF32",
                "cifar10: runtime bf16 + CUDA graphs + channels_last", "cifar10: TensorRT fp16 engine"):
        assert any(n.startswith(row) for n in names), (row, out)
    by_name = {cells(l)[0]: cells(l) for l in table}
    failed = [c for n, c in by_name.items() if n.startswith("cifar10: end to end")]
    assert failed and failed[0][2].startswith("failed: RuntimeError: injected fault"), failed
    for line in table:  # every measured sampling row agrees with the fp32 yardstick (CPU: fp32 throughout)
        c = cells(line)
        if c[1] and c[7]:
            median, p99 = (float(v) for v in c[7].split("/"))
            assert p99 < 1e-4, line
    ref = [c[0] for c in map(cells, table) if c[0].startswith("cifar10: reference loop fp32")]
    assert ref and all("cuDNN TF32 on" in r for r in ref), ref  # PyTorch's default, untouched
    yard = [c[0] for c in map(cells, table) if c[0].startswith("cifar10: fp32 without TF32")]
    assert yard and all("cuDNN TF32 off" in r for r in yard), yard
    saved = (tmp_path / "gpu_check.md").read_text()
    assert all(l in saved for l in streamed)  # the file under $OUT has every row too


@pytest.mark.slow
def test_gpu_check_sigterm_prints_what_was_measured(tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--small", "--repeats", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**ENV, "OUT": str(tmp_path)},
                            cwd=str(ROOT))
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # half-way: after the yardstick row, before the rest
        seen.append(line)
        if line.startswith("| cifar10: fp32 without TF32") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    assert proc.returncode == 3, (proc.returncode, out[-2000:], err[-2000:])
    assert "interrupted by SIGTERM" in out, out[-2000:]
    final = out.index("gpu_check (interrupted")
    table = table_rows(out[final:])
    assert any(l.startswith("| cifar10: reference loop fp32") for l in table), out[final:]
    assert not any(l.startswith("| mnist:") for l in table)  # it stopped: later rows never ran
    assert "Traceback" not in err, err


@pytest.mark.slow
def test_gpu_train_check_dry_run(tmp_path):
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_train_check.sh"), "--small", "--steps", "3"],
                       capture_output=True, text=True, env=ENV, cwd=str(ROOT), timeout=600)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    assert p.stdout.strip().splitlines()[-1].startswith("|")
    rows = [cells(l) for l in table_rows(p.stdout)]
    names = [r[0] for r in rows]
    assert any(n.startswith("reference-style step") for n in names) and any(n.startswith("fdrl-train fp32") for n in names)
    assert all(r[1] and float(r[1]) > 0 for r in rows), rows
