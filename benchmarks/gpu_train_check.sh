#!/usr/bin/env bash
# Run on a lent GPU machine: bash benchmarks/gpu_train_check.sh (at most 7 minutes).
# --small runs a shrunken version on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=. PYTHONUNBUFFERED=1 timeout -k 20 400 python3 benchmarks/gpu_train_check.py "$@"
