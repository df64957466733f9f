#!/usr/bin/env bash
# The main job on the embedded default, end to end: train the swiss-roll preset, export
# its estimator and exact input gradient to ONNX (checked against float64 autograd),
# generate 10,000 samples with the torch-free runtime and draw them.
#   bash scripts/demo.sh [OUT_DIR]        (about 5 minutes on 2 cores)
source "$(dirname "$0")/setup_env.sh" onnx
out="${1:-runs/demo}"
cores=$(python -c "import os; print(len(os.sched_getaffinity(0)))")
echo "demo: trains the swissroll preset (3,500 steps: about 4 minutes on 2 cores, $cores here), exports it" \
     "with its float64 check (~10 s), samples 10,000 points (~10 s). To sample at once instead, use the" \
     "bundled pre-trained swissroll: the README's 'Samples in seconds'" >&2
fdrl-train --config swissroll --out "$out" --overwrite
fdrl-export "$out/last.pt" "$out/model.onnx"
fdrl-infer --engine "$out/model.onnx" -n 10000 --out "$out/generated" --grid "$out/samples.png" --overwrite
echo "picture of the samples: $out/samples.png; samples: $out/generated/shards/*.npz"
