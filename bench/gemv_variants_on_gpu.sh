#!/usr/bin/env bash
# The GEMV variant sweep (bench/gemv_variants.py) and the MLP's end-to-end harness figure of the same
# machine, in one command on a GPU machine (about 2 minutes; at most ~190 s by the timeouts below):
#
#   bash bench/gemv_variants_on_gpu.sh        # from the repository root; results in $OUT
#
# Each variant group runs in its own process under its own timeout (a kernel fault or hang loses that
# group only); rows are appended to $OUT/gemv_sweep.md as they are measured. Then the harness
# (`bench/e2e/run_on_gpu.sh --models mlp --no-cpu`) gives kernelos' own MLP run() time; its table and
# the MLP's GPU profile are copied to $OUT. E2E_GEMV_SHAPES="4x16 1x32" also runs the harness with
# each of those KOS_CUDA_GEMV shapes of the builder's GEMV template (up to 45 s more each).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gemv-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
SWEEP=$OUT/gemv_sweep.md
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv >"$OUT/smi.txt" 2>&1
sweep() {   # timeout_s budget_s group...
    local t=$1 b=$2; shift 2
    timeout -k 3 "$t" "$PY" -m bench.gemv_variants "${@/#/--group=}" --budget-s "$b" --out "$SWEEP" >>"$OUT/gemv_sweep.log" 2>&1
    echo "groups $*: exit $?" >>"$SWEEP"
}
sweep 55 40 builder shape loop
E2E_BUDGET_S=45 OUT=/tmp/gemv-e2e timeout -k 3 55 bash bench/e2e/run_on_gpu.sh --models mlp --no-cpu >"$OUT/e2e.log" 2>&1
echo "e2e exit $?" >>"$OUT/e2e.log"
cp /tmp/gemv-e2e/e2e/table.md "$OUT/e2e_table.md" 2>/dev/null
cp /tmp/gemv-e2e/e2e/logs/mlp.profile.nv-0.txt "$OUT/" 2>/dev/null
for shape in ${E2E_GEMV_SHAPES:-}; do
    KOS_CUDA_GEMV=$shape E2E_BUDGET_S=35 OUT=/tmp/gemv-e2e-$shape timeout -k 3 45 bash bench/e2e/run_on_gpu.sh \
        --models mlp --no-cpu >>"$OUT/e2e.log" 2>&1
    echo "e2e KOS_CUDA_GEMV=$shape exit $?" >>"$OUT/e2e.log"
    cp "/tmp/gemv-e2e-$shape/e2e/table.md" "$OUT/e2e_table.$shape.md" 2>/dev/null
done
sweep 30 18 hints
sweep 30 18 pdl
sweep 24 12 bulk
tail -n 4 "$SWEEP"
