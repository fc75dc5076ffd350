#!/usr/bin/env bash
# The GPU session's first command: everything only a CUDA GPU shows (bench/gpu_check.py's docstring), in at most
# 8 minutes; rows append to bench/results/gpu_*.csv. Run from anywhere: `bash bench/gpu_check.sh [options]`
# (options go to gpu_check.py: --sections, --cpu-smoke --out DIR, ...). Without a CUDA GPU: one line, exit 2.
#
# Which python: $PYTHON if set, else the first of .venv/bin/python and python3 whose torch sees a CUDA GPU (a GPU
# machine's own python3 may hold a CUDA torch where the repo's .venv holds the CPU build); with no .venv and none
# that sees one, `make venv` is tried (it needs the network or a local wheel cache) and what is missing is said.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
START=$SECONDS
BUDGET_S=480  # the 8 minutes; gpu_check.py gets what is left, less 25 s to write its table

sees_cuda() { timeout 90 "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }

smoke=0
for a in "$@"; do case $a in --cpu-smoke|--dry-run) smoke=1;; esac; done

PY=${PYTHON:-}
if [[ -z $PY ]]; then
    candidates=()
    [[ -x .venv/bin/python ]] && candidates+=(.venv/bin/python)
    command -v python3 >/dev/null && candidates+=("$(command -v python3)")
    if [[ $smoke == 0 ]]; then
        for c in "${candidates[@]}"; do
            if sees_cuda "$c"; then PY=$c; break; fi
        done
        if [[ -z $PY && ! -x .venv/bin/python ]]; then
            echo "gpu_check.sh: no .venv and no python whose torch sees a CUDA GPU: trying \`make venv\`" >&2
            if timeout 150 make venv >&2; then
                candidates=(.venv/bin/python "${candidates[@]}")
                sees_cuda .venv/bin/python && PY=.venv/bin/python
            else
                echo "gpu_check.sh: \`make venv\` failed (no network?): pip cannot install torch or the package here" >&2
            fi
        fi
    fi
    # none sees a GPU (or a smoke run): the repo's venv if any, so that gpu_check.py says what is missing
    PY=${PY:-${candidates[0]:-}}
fi
if [[ -z $PY ]]; then
    echo "gpu_check: no python found (.venv/bin/python or python3): run \`make venv\` on a machine with the network" >&2
    exit 3
fi
left=$(( BUDGET_S - (SECONDS - START) ))
export PYTHONUNBUFFERED=1
exec timeout --kill-after=10 "$left" "$PY" bench/gpu_check.py --budget-s "$(( left - 25 ))" "$@"
