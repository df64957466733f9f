#!/usr/bin/env bash
# The CPU tables of benchmarks/RESULTS.md, regenerated in one run (about 25 minutes on 2 cores):
#   bash benchmarks/cpu_tables.sh [--small] [OUT_DIR] [RESULTS_MD]
# --small: the same runs at toy sizes, one compiling row (the test suite's dry run; the runtime torch row is tested in test_bench.py).
# Each table is written under OUT_DIR (markdown, JSON, plots) and the whole set replaces
# what stands between the cpu-tables markers in benchmarks/RESULTS.md. Steps per timed call
# are multiples of 10: the runtime's blocks of steps (a shorter tail block runs uncompiled).
set -euo pipefail
small=0
if [ "${1:-}" = "--small" ]; then small=1; shift; fi
out="${1:-benchmarks/out}"
results="${2:-benchmarks/RESULTS.md}"
mkdir -p "$out"
tables="$out/tables.md"
: > "$tables"
bench() {  # bench NAME TITLE ARGS...: one fdrl-bench run, its command and table appended
    local name="$1" title="$2"; shift 2
    printf '### %s\n\n    fdrl-bench %s\n\n' "$title" "$*" >> "$tables"
    fdrl-bench "$@" | tee "$out/$name.md" >> "$tables"
    printf '\n' >> "$tables"
}
if [ "$small" = 1 ]; then
    mlp=(--batch 64 --steps 10 --repeats 1 --warmup 0 --backends eager,graph,compile,onnxruntime); img=(--batch 2 --steps 1 --repeats 1 --warmup 0 --backends eager,graph,onnxruntime)
    # the image tables on the 8x8 digits ResNet: the plumbing of each table, not the big exports
    mnist=(--model resnet8 "${img[@]}"); cifar=(--model resnet8 "${img[@]}"); dry=" (dry run on resnet8)"
    tsw=(--repeats 1 --warmup 0 --set batch_size=32 --set flow_steps=3)
else
    mlp=(--batch 256,1024,4096 --steps 20 --repeats 7); mnist=(--model resnet28 --batch 16,64 --steps 10 --repeats 3 --warmup 0)
    cifar=(--model resnet32 --batch 16 --steps 10 --repeats 2 --warmup 0); tsw=(--repeats 7); tmn=(--repeats 3 --warmup 0)
    dry=""
fi
bench mlp "Flow step: toy MLP" --model mlp "${mlp[@]}" --json "$out/mlp.json" --plot "$out/mlp.png"
bench mnist "Flow step: MNIST ResNet 28×28$dry" "${mnist[@]}" --json "$out/mnist.json" --plot "$out/mnist.png"
bench cifar10 "Flow step: CIFAR-10 ResNet 32×32$dry" "${cifar[@]}" --json "$out/cifar10.json"
bench train_swissroll "Training step: swiss roll" --train swissroll "${tsw[@]}"
if [ "$small" = 0 ]; then  # (its compile_flow row compiles the ResNet's flow: minutes, not a dry run's)
    bench train_mnist "Training step: MNIST" --train mnist "${tmn[@]}"
fi
python - "$tables" "$results" <<'PY'
import sys
from pathlib import Path
tables, results = Path(sys.argv[1]).read_text(), Path(sys.argv[2])
start, end = "<!-- cpu-tables:start -->", "<!-- cpu-tables:end -->"
text = results.read_text()
if start not in text or end not in text:
    sys.exit(f"{results}: no {start} ... {end} markers to replace between")
head, rest = text.split(start, 1)
results.write_text(head + start + "\n" + tables + end + rest.split(end, 1)[1])
PY
echo "$results: tables replaced from $tables" >&2
