# Sourced by demo.sh and test.sh: a project virtualenv with fdrl and its extras installed.
# torch is pinned to 2.13.0 here: with no torch present, an open range would pull a
# multi-GB CUDA build on machines that only need the CPU one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[$1]"
