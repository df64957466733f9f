import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fdrl_core.launch import available_cores

ROOT = Path(__file__).resolve().parents[1]
# pytest-xdist runs WORKERS processes side by side (scripts/test.sh): each gets its share of
# the cores, and so do the commands it starts (OMP_NUM_THREADS, read by their torch), so
# threads are not multiplied by workers on a small machine.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, available_cores() // WORKERS)
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)


def ort_session(model_bytes):
    """An ONNX Runtime CPU session with this worker's share of the cores, not spinning."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def per_sample_rel_err(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """||out - ref|| / ||ref|| for each sample (first dimension)."""
    out, ref = out.double().reshape(out.shape[0], -1), ref.double().reshape(ref.shape[0], -1)
    return (out - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-30)


class _CliServer:
    """One tests/cli_batch.py per test process: commands run in forked children of a
    process that imported them once. FDRL_TEST_REAL_PROCESSES=1 runs a fresh
    `python -m` for each instead (the same results, 3 s slower each)."""

    def __init__(self):
        import threading
        self.proc, self.lock = None, threading.Lock()

    def run(self, module, args, env, timeout, cwd=None):
        import json
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "cli_batch.py")], cwd=str(ROOT),
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                             env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": os.pathsep.join(
                                                 filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
            self.proc.stdin.write(json.dumps({"module": module, "args": [str(a) for a in args], "env": env,
                                              "cwd": None if cwd is None else str(cwd), "timeout": timeout}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            assert line, "the command server died"
            r = json.loads(line)
        if r["timed_out"]:
            raise subprocess.TimeoutExpired([module, *args], timeout, r["stdout"], r["stderr"])
        done = subprocess.CompletedProcess([module, *args], r["returncode"], r["stdout"], r["stderr"])
        done.seconds = r["seconds"]
        return done


    def close(self):
        """At the end of the session: EOF ends the server's loop; wait for it."""
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self.proc.stdout.close()
            self.proc = None


_SERVER = _CliServer()


def pytest_sessionfinish(session, exitstatus):
    _SERVER.close()


def run_cli(*args, env=None, timeout=600, cwd=None):
    """Run one of the project's commands as a user would (`python -m MODULE ARGS`): its own
    process, this environment plus `env`, in `cwd` (the repository by default); returns
    CompletedProcess."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    if os.environ.get("FDRL_TEST_REAL_PROCESSES") == "1":
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=full_env,
                              timeout=timeout, cwd=str(cwd or ROOT))
    return _SERVER.run(args[0], args[1:], full_env, timeout, cwd)


def run_cli_many(cases, env=None, timeout=600):
    """[(module, args[, env]), ...] each run as run_cli runs it, in order."""
    return [run_cli(c[0], *c[1], env={**(env or {}), **(c[2] if len(c) > 2 and c[2] else {})}, timeout=timeout)
            for c in cases]


def assert_user_error(proc, *fragments):
    """Exit code 2, a one-line message naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, lines[0])


@pytest.fixture
def tmp_run(tmp_path):
    return tmp_path / "run"


# The files that take longest (minutes of CPU each, measured with --durations), collected
# first: pytest-xdist hands whole files to its workers in collection order, so the long
# ones start at once and the short ones fill in at the end, instead of one long file
# running alone while the other worker idles.
LONGEST_FIRST = ("test_presets.py", "test_train.py", "test_export_images.py", "test_bench.py", "test_export.py",
                 "test_hardening.py", "test_conditional.py", "test_runtime.py", "test_bad_input.py", "test_drift.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the order within a file stays
