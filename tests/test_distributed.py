"""torchrun with two CPU processes (gloo): ranks in step, equal to one process with the
same global batch, and resumable on another world size."""
import json
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

from fdrl_train.checkpoint import load_checkpoint

ARGS = ["--config", "swissroll", "--quiet", "--set", "batch_size=64", "flow_steps=10", "ckpt_every=4",
        "sample_every=0", "log_every=2", "compile_flow=false", "threads=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "fdrl_train.cli", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), timeout=600)


def max_diff(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    two = torchrun(tmp_path / "two", *ARGS[:1], ARGS[1], "--out", str(tmp_path / "two"), *ARGS[2:], "steps=8")
    assert two.returncode == 0, two.stderr[-2000:]
    spread = json.loads((tmp_path / "two" / "distributed.json").read_text())
    assert spread["world_size"] == 2 and spread["max_weight_spread"] == 0.0  # both ranks hold the same weights
    one = run_cli("fdrl_train.cli", *ARGS[:2], "--out", str(tmp_path / "one"), *ARGS[2:], "steps=8")
    assert one.returncode == 0, one.stderr
    a, b = load_checkpoint(tmp_path / "two" / "last.pt"), load_checkpoint(tmp_path / "one" / "last.pt")
    assert a["step"] == b["step"] == 8
    assert max_diff(a["model"], b["model"]) < 1e-5
    # Resume the two-process run in one process: it continues the same run.
    more = run_cli("fdrl_train.cli", "--resume", str(tmp_path / "two"), "--quiet", "--set", "steps=12")
    assert more.returncode == 0, more.stderr
    ref = run_cli("fdrl_train.cli", *ARGS[:2], "--out", str(tmp_path / "ref"), *ARGS[2:], "steps=12")
    assert ref.returncode == 0
    assert max_diff(load_checkpoint(tmp_path / "two" / "last.pt")["model"],
                    load_checkpoint(tmp_path / "ref" / "last.pt")["model"]) < 1e-5


def test_batch_must_split_over_the_ranks(tmp_path):
    p = torchrun(tmp_path / "x", *ARGS[:2], "--out", str(tmp_path / "x"), *ARGS[2:], "steps=2", "batch_size=63")
    assert p.returncode != 0 and "does not split over 2 processes" in p.stderr
