#!/usr/bin/env bash
# Run on a lent GPU machine (torch + numpy are all it needs): bash benchmarks/gpu_check.sh
# Checks CUDA-graph and bf16 samples of the torch backend against fp32 eager and prints a
# throughput table last (CIFAR-10 ResNet, batch 256). --small: a quick dry run on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=. PYTHONUNBUFFERED=1 timeout 480 python3 benchmarks/gpu_check.py "$@"
