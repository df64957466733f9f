"""The console scripts' entry points: each checks that its extra is installed, then runs
the CLI. Without the check, `pip install fdrl` (the runtime alone) and then `fdrl-train`
would end in an ImportError traceback from deep inside the package."""
from __future__ import annotations

import importlib
import importlib.util

from .errors import fail

# command -> (module with main, extra, the top-level packages that extra brings)
COMMANDS = {
    "fdrl-train": ("fdrl_train.cli", "train", ("torch", "yaml", "sklearn")),
    "fdrl-export": ("fdrl_export.cli", "export", ("torch", "yaml", "sklearn", "onnxscript")),
    "fdrl-infer": ("fdrl_runtime.cli", None, ("numpy", "click", "PIL", "onnx", "onnxruntime")),
    "fdrl-bench": ("fdrl_bench.cli", "bench", ("torch", "yaml", "sklearn")),
    "fdrl-eval": ("fdrl_eval.cli", "eval", ("torch", "yaml", "sklearn", "scipy")),
}


# fdrl-train's quality watch (config key eval_every) samples through an exported graph on the
# runtime and judges with fdrl_eval's measures: packages fdrl_train may not import (DESIGN.md
# §3), so it is found here by name, as the commands are.
QUALITY_WATCH = ("fdrl_eval.watch", ("onnx", "onnxscript", "onnxruntime", "scipy", "matplotlib"),
                 "pip install 'fdrl[export,eval]'")


def quality_watch_module():
    """(fdrl_eval.watch, None), or (None, why not: the packages this install lacks)."""
    module, needs, fix = QUALITY_WATCH
    missing = missing_packages(needs)
    if missing:
        return None, f"needs {', '.join(missing)}, which this install lacks: {fix}"
    return importlib.import_module(module), None


def missing_packages(packages) -> list[str]:
    return [p for p in packages if importlib.util.find_spec(p) is None]


def run(command: str):
    module, extra, needs = COMMANDS[command]
    missing = missing_packages(needs)
    if missing:
        fix = f"pip install 'fdrl[{extra}]'" if extra else "pip install --force-reinstall fdrl"
        fail(command, f"needs {', '.join(missing)}, which this install lacks: {fix}")
    return importlib.import_module(module).main()


def train():
    return run("fdrl-train")


def export():
    return run("fdrl-export")


def infer():
    return run("fdrl-infer")


def bench():
    return run("fdrl-bench")


def evaluate():
    return run("fdrl-eval")
