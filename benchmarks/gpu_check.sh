#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, run every lesson in the gpu profile, the
# throughput benchmark and a short MFU measurement, and write ONE JSON with wall time,
# peak memory and MFU per lesson (plus the machine, the benchmark and the MFU check).
#
#   bash benchmarks/gpu_check.sh [out.json]          # default runs/gpu_check.json
#
# It finishes within 10 minutes (GPU_CHECK_BUDGET_S, default 600): the lessons share what
# the benchmarks leave of it, each an equal share of the time still left, and a lesson
# still running at the end of its share is stopped and reported as over budget, with the
# memory and MFU it reached (GPU_CHECK_BUDGET_S=0: no limit, every lesson runs to its
# end). The JSON says whether the whole check fit ("within_budget"). The executed
# lessons are kept next to the JSON (out_dir/executed/),
# so their figures can be read or rendered. To test the plumbing on a CPU in a minute or
# two, run the dry profile: GPU_CHECK_PROFILE=gpu-dry bash benchmarks/gpu_check.sh /tmp/x.json
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-runs/gpu_check.json}
profile=${GPU_CHECK_PROFILE:-gpu}
budget=${GPU_CHECK_BUDGET_S:-600}
out_dir=$(dirname "$out")
mkdir -p "$out_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(python -c "import time; print(time.time())")

if [[ "$profile" != *dry* ]] && ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: no CUDA GPU visible; for a CPU dry run set GPU_CHECK_PROFILE=gpu-dry" >&2
  exit 1
fi
small=()
if [[ "$profile" == *dry* ]]; then
  # The dry run only tests that every part runs: tiny benchmark sizes on the CPU.
  small=(--seq 32 --batch 4 --steps 2 --warmup 1)
fi

echo "gpu_check: short MFU measurement ($profile)"
python benchmarks/gpu_check.py mfu --profile "$profile" "${small[@]}" > "$work/mfu.json"
measured_peak=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['measured_peak_flops_per_s'])" "$work/mfu.json")

echo "gpu_check: throughput benchmark"
if [[ "$profile" == *dry* ]]; then
  python benchmarks/throughput.py --device cpu --d-model 64 --layers 2 --heads 4 --seq 32 \
    --batch 4 --steps 1 --repeats 1 --warmup 1 > "$work/throughput.json"
else
  python benchmarks/throughput.py --device cuda > "$work/throughput.json"
fi

limit=()
if [[ "$budget" != 0 ]]; then
  # What the benchmarks left of the budget, less 15 s to merge and print.
  left=$(python -c "import sys, time; print(int(float(sys.argv[1]) - (time.time() - float(sys.argv[2])) - 15))" "$budget" "$started")
  limit=(--total-limit "$left")
fi
echo "gpu_check: every lesson in the $profile profile ${limit[*]:+(${limit[*]} s)}"
set +e  # a failing lesson is reported in the JSON; the status comes from it below
python -m omni_edu.tools.run_lessons run --profile "$profile" --out "$out_dir/executed" \
  --json "$work/lessons.json" --measured-peak "$measured_peak" "${limit[@]}"
set -e

python benchmarks/gpu_check.py merge --lessons "$work/lessons.json" \
  --throughput "$work/throughput.json" --mfu "$work/mfu.json" --started "$started" \
  --budget "$budget" > "$out"
python - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"gpu_check: {r['machine']['gpu'] or 'no GPU'}, {r['profile']} profile, "
      f"{r['total_wall_s']:.0f} s in all (budget {r['budget_s']} s)")
for row in r["lessons"]:
    mem = row["peak_cuda_mib"] or row["peak_rss_mib"] or 0
    mfu = f"{row['mfu']:.1%}" if row["mfu"] else "-"
    state = "ok" if row["ok"] else "over budget" if row["over_budget"] else "FAILED"
    print(f"  {row['lesson']:<32} {state:<11} {row['wall_s']:7.1f} s  "
          f"peak {mem:8.0f} MiB  MFU {mfu}")
print(f"wrote {sys.argv[1]}")
# Fail on a broken lesson; a lesson longer than its share of the budget is a finding.
sys.exit(any(not row["ok"] and not row["over_budget"] for row in r["lessons"]))
PY
