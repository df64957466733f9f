#!/usr/bin/env bash
# The GPU check, one command on a lent GPU machine (about 6 minutes; needs only torch and
# numpy, installs nothing): bash benchmarks/gpu_check.sh
# Rows (benchmarks/gpu_check.py says which and what each column measures), most important
# first, each printed the moment it is measured and appended to $OUT/gpu_check.md (else
# benchmarks/out/gpu_check.md); a failing row is one line; a row that would end past the
# 330 s budget is skipped; SIGTERM (the timeout below) prints what was measured.
# --small: the same on tiny models, a dry run on any CPU (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=. PYTHONUNBUFFERED=1 timeout -k 20 400 python3 benchmarks/gpu_check.py "$@"
