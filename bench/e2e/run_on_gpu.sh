#!/usr/bin/env bash
# Issue 9's end-to-end harness on a GPU machine in one command (about 3-4 minutes on one H100):
#
#   bash bench/e2e/run_on_gpu.sh            # from the repository root; results in $OUT/e2e
#
# Builds the three model images (cpu + the GPU's sm_XX), runs kernelos on nv:0 and on the cpu device,
# PyTorch eager / CUDA graph (fp32, TF32) and onnxruntime on the same inputs, checks every output
# against the float64 reference, and prints the table. Every stage runs under its own timeout and the
# whole harness under E2E_BUDGET_S (default 270 s) plus a hard `timeout`; whatever finished is copied
# to $OUT/e2e (table.md, results.json, logs/) even when something failed or timed out.
# Big files (images, models, outputs) stay in E2E_WORK (default /tmp/kernelos-e2e).
set -u
cd "$(dirname "$0")/../.."
WORK=${E2E_WORK:-/tmp/kernelos-e2e}
DEST=${OUT:-$WORK/out}/e2e
BUDGET_S=${E2E_BUDGET_S:-270}
DEVICE=${E2E_DEVICE:-nv:0}
PY=${PYTHON:-python3}
if ! "$PY" -c 'import torch' 2>/dev/null && [ -x /opt/torch/.venv/bin/python ]; then PY=/opt/torch/.venv/bin/python; fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$WORK" "$DEST"
echo "python: $PY ($("$PY" --version 2>&1)); device $DEVICE; budget ${BUDGET_S} s; work dir $WORK; results -> $DEST"
timeout -k 10 $((BUDGET_S + 30)) "$PY" -m bench.e2e --out "$WORK" --device "$DEVICE" --budget-s "$BUDGET_S" "$@"
rc=$?
[ $rc -eq 124 ] && echo "run_on_gpu.sh: the harness hit its hard timeout; copying what it wrote"
cp -r "$WORK/table.md" "$WORK/results.json" "$WORK/logs" "$WORK/results" "$DEST"/ 2>/dev/null
echo "run_on_gpu.sh: exit $rc; results in $DEST"
exit $rc
