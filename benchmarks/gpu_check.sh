#!/usr/bin/env bash
# The GPU check: one run on a machine with an NVIDIA GPU, PyTorch, Triton and nvidia-ml-py
# already installed. Installs nothing, needs no network; run from anywhere:
#
#     benchmarks/gpu_check.sh OUTDIR
#
# 1. environment: nvidia-smi, versions, what is importable            -> OUTDIR/env.txt
# 2. the CUDA correctness tests (tests/test_triton_cuda.py)           -> OUTDIR/tests.log
# 3. the GPU suite, eager phase (cuDNN vs the REVD2 Triton kernel)    -> OUTDIR/suite.log
# 4. the energy phase (NVML counter, cost-model estimates)            -> OUTDIR/suite.log
# 5. the compile phase (torch.compile max-autotune, ESPCN compiled)   -> OUTDIR/suite.log
#    results of 3-5: OUTDIR/gpu-<device>.md and .json (merged after every layer)
# 6. OUTDIR/tuning-cache/: what `auto` and the kernel's tuner timed and chose
# 7. OUTDIR/summary.txt: each step's exit status and seconds, then the targets table.
#
# Every step has a time limit, and all of them share one deadline (UPCONV_GPU_CHECK_BUDGET_S,
# default 510 s), so the whole check ends well inside 10 minutes; a step cut short keeps what
# it wrote. The Triton kernel's tuning is capped per process (UPCONV_TRITON_TUNE_BUDGET_S).
# UPCONV_GPU_CHECK_TESTS=0 skips step 2 (a suite rerun on a kernel already tested there).
# UPCONV_GPU_CHECK_DRY_RUN=1 runs the same steps on the CPU with tiny inputs (the suite's
# --dry-run; the CUDA tests then skip): a check of the script itself on a machine without GPU.
set -u
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
cd "$ROOT" || exit 2

PY=${PYTHON:-python3}
BUDGET=${UPCONV_GPU_CHECK_BUDGET_S:-510}
DRY=${UPCONV_GPU_CHECK_DRY_RUN:-0}
START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/upconv-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export UPCONV_CACHE_DIR="$WORK/cache"            # autotune + kernel-tuning choices
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$WORK/triton}"  # compiled kernels, shared by steps
export UPCONV_TRITON_TUNE_BUDGET_S=${UPCONV_TRITON_TUNE_BUDGET_S:-120}
unset TRITON_INTERPRET

if [ "$DRY" = 1 ]; then
    SUITE=(--dry-run --quick --layers G1,G4,L1 --dtypes fp32 --energy-seconds 0.2)
else
    SUITE=()
fi

SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
: > "$OUT/suite.log"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME CAP_SECONDS RESERVE_SECONDS LOG COMMAND...: run COMMAND with a time limit of
# min(CAP, time left - RESERVE), appending its output to LOG; record status and seconds.
step() {
    local name=$1 cap=$2 reserve=$3 log=$4
    shift 4
    local limit=$(( $(left) - reserve ))
    [ "$limit" -gt "$cap" ] && limit=$cap
    if [ "$limit" -lt 15 ]; then
        echo "$name: not run (deadline: $(left) s left of $BUDGET)" | tee -a "$SUMMARY"
        return
    fi
    echo "== $name (limit ${limit} s) ==" | tee -a "$log"
    local t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >> "$log" 2>&1
    local rc=$?
    local note=""
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && note=" (time limit reached)"
    echo "$name: exit $rc after $(( $(date +%s) - t0 )) s$note" | tee -a "$SUMMARY"
}

{
    echo "== nvidia-smi =="
    if command -v nvidia-smi > /dev/null; then
        timeout 30 nvidia-smi || echo "nvidia-smi failed"
        timeout 30 nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,power.limit \
            --format=csv || true
    else
        echo "nvidia-smi not found"
    fi
    echo "== git =="
    git -C "$ROOT" log -1 --format='%H %cI %s' 2>/dev/null || echo "not a git checkout"
} > "$OUT/env.txt" 2>&1
step environment 60 300 "$OUT/env.txt" "$PY" -c '
import json
from upconv.bench.gpu_suite import gpu_check_environment
print(json.dumps(gpu_check_environment(), indent=1, default=str))'

# correctness first: every kernel configuration the tuner may pick, on the device
# (UPCONV_GPU_CHECK_TESTS=0 leaves them out: a rerun of the suite on a kernel whose tests
# already passed on this device, when device time is short)
if [ "${UPCONV_GPU_CHECK_TESTS:-1}" = 0 ]; then
    echo "cuda-tests: skipped (UPCONV_GPU_CHECK_TESTS=0)" | tee -a "$SUMMARY"
else
    step cuda-tests 170 250 "$OUT/tests.log" "$PY" -m pytest tests/test_triton_cuda.py -q -rs \
        -p no:cacheprovider --durations=15
fi

step suite-eager 190 130 "$OUT/suite.log" "$PY" benchmarks/run.py --device cuda \
    --phase eager --out "$OUT" ${SUITE[@]+"${SUITE[@]}"}
step suite-energy 60 70 "$OUT/suite.log" "$PY" benchmarks/run.py --device cuda \
    --phase energy --out "$OUT" ${SUITE[@]+"${SUITE[@]}"}
step suite-compile 150 5 "$OUT/suite.log" "$PY" benchmarks/run.py --device cuda \
    --phase compile --out "$OUT" ${SUITE[@]+"${SUITE[@]}"}

# the choices and per-candidate timings of `auto` and of the kernel's tuner, for diagnosis
cp -r "$WORK/cache" "$OUT/tuning-cache" 2>/dev/null || true

{
    echo "total: $(( $(date +%s) - START )) s"
    for md in "$OUT"/gpu-*.md; do
        [ -f "$md" ] || continue
        echo "== $(basename "$md"): targets =="
        sed -n '/^## Targets/,/^## Layers/p' "$md" | sed '$d'
    done
} >> "$SUMMARY"
cat "$SUMMARY"
ls -l "$OUT"
