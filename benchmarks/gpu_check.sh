#!/usr/bin/env bash
# The GPU check, one command on a lent GPU machine (at most 8 minutes; needs only torch and
# numpy, installs nothing): bash benchmarks/gpu_check.sh
# Sampling rows (reference-style eager, torch backend eager / CUDA graphs in fp32, bf16,
# fp16, torch.compile, TensorRT where it imports) on the CIFAR-10 ResNet at batch 256 and
# 1024, then training steps/s; one table last, for benchmarks/RESULTS.md.
# --small: the same on a tiny model, a dry run on any CPU (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=. PYTHONUNBUFFERED=1 timeout 480 python3 benchmarks/gpu_check.py "$@"
