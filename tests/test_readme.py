"""The README's set-up commands exist and CI runs the README's test command."""
import re

from conftest import ROOT, run_cli


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_cmd = re.search(r"^\s+(bash scripts/test\.sh)", readme, re.M).group(1)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s+bash scripts/demo\.sh", readme, re.M)
    for script in ("scripts/test.sh", "scripts/demo.sh", "scripts/setup_env.sh"):
        assert (ROOT / script).is_file()


def test_every_command_in_the_readme_answers_help():
    for module in ("fdrl_train.cli", "fdrl_export.cli", "fdrl_runtime.cli", "benchmarks.bench"):
        p = run_cli(module, "--help")
        assert p.returncode == 0 and "Usage" in p.stdout, (module, p.stderr)


def test_demo_runs_the_three_commands_in_order():
    demo = (ROOT / "scripts" / "demo.sh").read_text()
    order = [demo.index(c) for c in ("fdrl-train --config swissroll", "fdrl-export", "fdrl-infer")]
    assert order == sorted(order)
