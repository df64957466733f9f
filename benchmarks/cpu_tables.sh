#!/usr/bin/env bash
# The CPU tables of benchmarks/RESULTS.md, in one run (about 15 minutes on 2 cores).
# bash benchmarks/cpu_tables.sh [OUT_DIR]
set -euo pipefail
out="${1:-benchmarks/out}"
mkdir -p "$out"
fdrl-bench --model mlp --batch 256,1024,4096 --steps 20 --repeats 7 --json "$out/mlp.json" --plot "$out/mlp.png" | tee "$out/mlp.md"
fdrl-bench --model resnet28 --batch 16,64 --backends eager,graph,onnxruntime,torch --steps 3 --repeats 5 \
    --json "$out/mnist.json" --plot "$out/mnist.png" | tee "$out/mnist.md"
fdrl-bench --model resnet32 --batch 16 --backends eager,graph,onnxruntime,torch --steps 2 --repeats 3 \
    --json "$out/cifar10.json" | tee "$out/cifar10.md"
fdrl-bench --train swissroll --repeats 7 | tee "$out/train_swissroll.md"
fdrl-bench --train mnist --repeats 5 | tee "$out/train_mnist.md"
