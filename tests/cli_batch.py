"""Command lines run as a user would, paying the imports once (the tests' `run_cli`).

`python tests/cli_batch.py` imports the commands' modules once (torch, onnxruntime, onnx,
click: about 3 s of every `python -m fdrl_...` start), then serves requests, one JSON line
each on stdin, answered by one JSON line on stdout: each command runs in a forked child,
its own process (exit code, stdout, stderr, signals, threads, environment, the files it
leaves), as `python -m MODULE ARGS` would, without that start-up. The server only
imports; it computes nothing, so no thread pool exists to be forked.

Request: {"module", "args", "env" (the child's whole environment), "cwd", "timeout"}; answer:
{"returncode", "stdout", "stderr", "seconds", "timed_out"}. A child that dies of a signal
reports -signal, as subprocess does; one past its timeout is killed (SIGKILL).
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback

# What the commands import lazily, imported before forking (each costs 0.1-1.3 s a process).
PRELOAD = ("torch", "onnx", "onnxruntime", "onnxscript", "PIL.Image", "yaml", "sklearn.datasets", "scipy.linalg",
           "tqdm", "fdrl_runtime.cli", "fdrl_train.cli", "fdrl_export.cli", "fdrl_eval.cli", "fdrl_bench.cli")


def run_child(module_name: str, args: list[str], env: dict | None, cwd: str | None, out_fd: int, err_fd: int) -> None:
    """In the forked child: the command's main as `python -m module` runs it; never returns."""
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the server's stdin carries requests
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        module = importlib.import_module(module_name)
        sys.argv = [module.__file__, *args]
        module.main(args=args, prog_name=f"python -m {module_name}")  # as click names a `python -m` run
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:  # sys.exit("text") prints the text, exit 1
            print(e.code, file=sys.stderr)
    except BaseException:  # what the interpreter would print for an uncaught error
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_one(request: dict) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            run_child(request["module"], request["args"], request.get("env"), request.get("cwd"), out.fileno(),
                      err.fileno())
        deadline, timed_out = t0 + float(request.get("timeout") or 1e9), False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                timed_out = True
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
    return {"returncode": os.waitstatus_to_exitcode(status), "stdout": texts[0], "stderr": texts[1],
            "seconds": seconds, "timed_out": timed_out}


def main() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an extra that is not installed: the commands say so themselves
            pass
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # nothing but answers on the answer channel (a child rebinds fd 1 to its own file)
    for line in sys.stdin:
        if line.strip():
            answers.write(json.dumps(run_one(json.loads(line))) + "\n")
            answers.flush()


if __name__ == "__main__":
    main()
