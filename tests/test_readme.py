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


def test_every_command_answers_help_from_a_fresh_interpreter():
    """`python -m MODULE --help` in real processes (the rest of the suite forks a server that
    imported the commands once: tests/cli_batch.py); and the same answer through the server."""
    import subprocess
    import sys
    for module in ("fdrl_train.cli", "fdrl_export.cli", "fdrl_runtime.cli", "fdrl_bench.cli", "fdrl_eval.cli"):
        p = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0 and "Usage" in p.stdout, (module, p.stderr)
        served = run_cli(module, "--help")
        assert (served.returncode, served.stdout, served.stderr) == (0, p.stdout, p.stderr)


def test_every_docs_and_benchmarks_path_named_in_the_repository_exists():
    """Each `docs/...` or `benchmarks/...` path any tracked file names is there (an output
    prefix such as docs/swissroll_beads counts when its files are; benchmarks/out/ is the
    scripts' output folder, made when they run)."""
    import subprocess
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    named = re.compile(r"(?<![\w/.\-])((?:docs|benchmarks)/[\w./\-]*\w)")
    missing = []
    for f in files:
        if not f.endswith((".py", ".md", ".yaml", ".sh", ".toml", ".txt")) or not (ROOT / f).is_file():
            continue
        for path in named.findall((ROOT / f).read_text(errors="replace")):
            if path.startswith("benchmarks/out") or (ROOT / path).exists() or list(ROOT.glob(path + ".*")):
                continue
            missing.append(f"{f}: {path}")
    assert not missing, missing


def quick_start_commands():
    readme = (ROOT / "README.md").read_text()
    for title in ("## Samples in seconds", "## Train → export → sample"):
        section = readme[readme.index(title):].split("\n## ", 1)[0]
        for line in section.splitlines():
            if line.startswith("    fdrl-"):
                yield line.split("#")[0].split()


def test_the_quick_start_commands_run(tmp_path):
    """Each command of the README's quick start, as written, in a fresh folder; only the
    sizes shrink (-n, training steps) so that it fits the suite."""
    from fdrl_core.samples import read_run_folder
    commands = list(quick_start_commands())
    assert [c[0] for c in commands] == ["fdrl-infer", "fdrl-infer", "fdrl-train", "fdrl-export", "fdrl-infer"]
    modules = {"fdrl-infer": "fdrl_runtime.cli", "fdrl-train": "fdrl_train.cli", "fdrl-export": "fdrl_export.cli"}
    for cmd in commands:
        args = ["64" if a == "10000" else a for a in cmd[1:]]
        if cmd[0] == "fdrl-train":
            args += ["--quiet", "--set", "steps=3", "flow_steps=2", "batch_size=16", "compile_flow=false",
                     "sample_every=0"]
        p = run_cli(modules[cmd[0]], *args, cwd=tmp_path)
        assert p.returncode == 0, (cmd, p.stderr[-2000:])
        if "--list" in cmd:
            assert all(name in p.stdout for name in ("digits", "swissroll", "25gaussians")), p.stdout
    assert (tmp_path / "digits.png").is_file() and (tmp_path / "swissroll.onnx").is_file()
    ids, x = read_run_folder(tmp_path / "samples")
    assert len(ids) == 64 and x.shape == (64, 2)


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
