#!/usr/bin/env bash
# The prepared GPU check (issue 17): at most about 8 minutes on one GPU, everything GPU time is
# scarce for, in one call:
#   1. the tests whose paths only a GPU takes for real: tests/training (mirrored float16, XLA),
#   2. the throughput benchmark for lenet300_100 and resnet20 (Fashion-MNIST, the dataset every
#      machine here has), float32 and mixed float16: an IMP round against a plain tf_keras fit
#      with and without XLA, and the IMP round with one XLA program per step instead of per
#      chunk (which of the two is faster on the GPU), images/s and ratios,
#   3. one JSON (gpu_check.json) and a table of it.
#
#   bash benchmarks/gpu_check.sh             # on the GPU machine (device tool: one `run` call)
#   bash benchmarks/gpu_check.sh --dry-run   # tiny sizes on a CPU: what CI runs
#
# OUT (default benchmarks/results/gpu_check) is where the JSON files go; PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

if [[ "${1:-}" == "--dry-run" ]]; then
  # Every step with sizes a CPU runs in about a minute: proves the script, measures nothing.
  # (--nojit_compile: timing XLA's CPU convolutions for resnet20 would take a minute; batch 16:
  # resnet20's 128 takes half a minute for the 20 steps on 2 CPU cores.)
  steps=20 repeats=1 only="fit,imp_round" precisions="float32" tests="--collect-only -q"
  jit="--nojit_compile" batch="--batch_size=16"
else
  steps=2000 repeats=3 only="fit,fit_xla,imp_round" precisions="float32 float16" tests="-q -x"
  # Which XLA program is faster on the GPU: the per-step one beside the whole chunk (float32).
  extra_float32=",imp_round_per_step"
fi

echo "== GPU tests"
"$PYTHON" -m pytest tests/training $tests -p no:cacheprovider | tail -3

for model in lenet300_100 resnet20; do
  for precision in $precisions; do
    echo "== $model, $precision"
    # resnet20's paper batch is 128; 2000 steps of it on a GPU take seconds. --nointerleave_fit:
    # fit runs in the benchmark's own process, no extra processes to start in the GPU's minutes.
    "$PYTHON" -m benchmarks.imp_throughput --model="$model" --dataset=fashion_mnist \
      --steps="$steps" --repeats="$repeats" ${jit:-} ${batch:-} --nointerleave_fit \
      --only="$only$([[ "$precision" == float32 ]] && echo "${extra_float32:-}")" \
      $([[ "$precision" == float32 ]] || echo "--mixed_precision=$precision") \
      --output="$OUT/$model-$precision.json"
  done
done

"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
runs = [json.loads(p.read_text()) for p in sorted(out.glob("*-float*.json"))]
summary = {"device": runs[0]["device"] if runs else None, "runs": runs}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
print(f"\n{'model':<14} {'precision':<9} {'measurement':<18} {'images/s':>10} {'x fit':>6}")
for run in runs:
    fit = run["results"].get("fit", {}).get("images_per_second")
    for name, result in run["results"].items():
        rate = result["images_per_second"]
        ratio = f"{rate / fit:5.2f}x" if fit else ""
        print(f"{run['model']:<14} {run['precision']:<9} {name:<18} {rate:>10,.0f} {ratio:>6}")
print(f"\nWrote {out / 'gpu_check.json'} (device: {summary['device']})")
PY
