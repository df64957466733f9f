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
    for module in ("fdrl_train.cli", "fdrl_export.cli", "fdrl_runtime.cli", "fdrl_bench.cli"):
        p = run_cli(module, "--help")
        assert p.returncode == 0 and "Usage" in p.stdout, (module, p.stderr)


def test_demo_runs_the_three_commands_in_order():
    demo = (ROOT / "scripts" / "demo.sh").read_text()
    order = [demo.index(c) for c in ("fdrl-train --config swissroll", "fdrl-export", "fdrl-infer")]
    assert order == sorted(order)


def test_the_python_example_runs_as_written_without_torch(tmp_path):
    """The README's Python section, run as written, where `import torch` fails."""
    import subprocess
    import sys
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python"):]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    block = ("import sys\n"
             "class _NoTorch:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'torch':\n"
             "            raise ImportError('torch is blocked in this test')\n"
             "sys.meta_path.insert(0, _NoTorch())\n")
    check = ("\nimport numpy as np\n"
             "assert x.shape == (1000, 2) and x.dtype == np.float32 and np.isfinite(x).all()\n"
             "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", block + example + check], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1.0", "0.01", "5", "(2,)"]


def test_the_python_api_gives_what_fdrl_infer_writes(tmp_path):
    import numpy as np

    import fdrl_runtime
    from fdrl_core.samples import read_run_folder
    art = ROOT / "tests" / "fixtures" / "artifact_v1" / "toy_ddp.onnx"
    proc = run_cli("fdrl_runtime.cli", "--engine", str(art), "-n", "300", "--seed", "5", "--batch", "128",
                   "--shard-size", "100", "--out", str(tmp_path / "o"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    _, written = read_run_folder(tmp_path / "o")
    with fdrl_runtime.load(art) as sampler:
        x = sampler.sample(300, seed=5, batch=7)
        some = dict((int(i), xb) for ids, xb in sampler.iter_batches(ids=[299, 3, 150], seed=5) for i, xb in zip(ids, xb))
        init = sampler.sample(10, seed=5, steps=2, init=x[:10])
        import pytest

        from fdrl_core.errors import UsageError
        with pytest.raises(UsageError, match="give n"):
            next(sampler.iter_batches())
    np.testing.assert_allclose(x, written, rtol=0, atol=1e-6)
    for i in (299, 3, 150):
        np.testing.assert_allclose(some[i], x[i], rtol=0, atol=1e-6)
    assert init.shape == (10, 2) and not np.allclose(init, x[:10])
