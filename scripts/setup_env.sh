# Sourced by demo.sh and test.sh: a project virtualenv with fdrl and its extras installed.
# torch is pinned to 2.13.0 here: with no torch present, an open range would pull a
# multi-GB CUDA build on machines that only need the CPU one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
# pip compiles every installed module to bytecode one file at a time (torch alone: 20 s);
# compileall does the same on every core, once per new virtualenv (benchmarks/NOTES.md).
python -m pip install -q --disable-pip-version-check --no-compile "torch==2.13.0" -e ".[$1]"
if [ ! -e .venv/.fdrl-compiled ]; then
    python -m compileall -q -j 0 "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
        > /dev/null 2>&1 || true  # a file that does not compile is one pip would have skipped too
    touch .venv/.fdrl-compiled
fi
