#!/usr/bin/env bash
# The CPU measurements quoted in the README (issues: parity and bench; CPU speed). Run from the repository root
# with nothing else loading the machine: every row records the load average before the run, the cores other
# processes used in the second before the command and during the row, CPU time beside wall time, and is marked
# `noisy` (with a warning) when other processes used more than half the cores then or its repeats disagree by
# more than 20 % (the load average is recorded, not judged: it includes this script's own exports). Rows append to bench/results/cpu_v2.csv
# (per input) and cpu_frames_v2.csv (whole 2048 x 2048 frames): one row per backend, precision and batch,
# environment, model GFLOPs, achieved GFLOP/s and % of the GEMM peak bench measures on this machine.
# (cpu.csv / cpu_frames.csv hold the earlier rows, without these columns.)
set -euo pipefail
CLI=${CLI:-.venv/bin/asfyolo-rt}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/datasets/DSB2018}
OUT=bench/results
ROWS=$OUT/cpu_v2.csv
FRAMES=$OUT/cpu_frames_v2.csv
mkdir -p "$OUT"
SINCE=$(date -u +%Y-%m-%dT%H:%M:%S)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2

# 1. the shipped DSB2018 model at its training size: PyTorch eager, ONNX Runtime FP32 / INT8 (both flavours),
#    OpenVINO FP32 / BF16 (where the CPU has it) / NNCF INT8
$CLI bench --backend torch,onnxruntime --precision fp32,int8,int8-cpu --data "$DATA" --iters 30 \
    --csv "$ROWS" --plot "$OUT/cpu_shipped.png"
$CLI bench --backend openvino --precision fp32,bf16,int8 --data "$DATA" --iters 30 --csv "$ROWS" \
    --plot "$OUT/cpu_shipped_openvino.png"
# 2. the paper's l model (random weights: speed does not depend on them) at 320 and 640
$CLI bench --model l --img-size 320 --backend torch,onnxruntime --precision fp32,int8-cpu --data "$DATA" \
    --iters 10 --csv "$ROWS" --plot "$OUT/cpu_l320.png"
$CLI bench --model l --img-size 320 --backend openvino --precision fp32,bf16,int8 --data "$DATA" \
    --iters 10 --csv "$ROWS"
$CLI bench --model l --img-size 640 --backend onnxruntime --precision fp32,int8-cpu --data "$DATA" \
    --iters 5 --warmup 1 --csv "$ROWS" --plot "$OUT/cpu_l640.png"
$CLI bench --model l --img-size 640 --backend openvino --precision fp32,bf16,int8 --data "$DATA" \
    --iters 5 --warmup 1 --csv "$ROWS"
# 3. post-processing share at 50, 300 and 1,000 cells (CPU path: OpenCV NMS + box-bounded mask assembly)
for cells in 50 300 1000; do
    $CLI bench --backend openvino --precision int8 --cells "$cells" --data "$DATA" --iters 20 --csv "$ROWS"
done
# 4. whole 2048 x 2048 frames (DSB2018 val nuclei at native scale; static batch-1 tiles, stitching, label map)
$CLI bench --frame 2048 --backend torch,onnxruntime --precision fp32,int8-cpu --data "$DATA" --iters 3 \
    --warmup 1 --csv "$FRAMES"
$CLI bench --frame 2048 --backend openvino --precision fp32,bf16,int8 --data "$DATA" --iters 3 \
    --warmup 1 --csv "$FRAMES"
# 5. pre-processing: 1272 x 603 -> 320 (INTER_LINEAR as predict, INTER_AREA as validation) and the tile-to-tensor pass
$PY bench/bench_preprocess.py --iters 200 --warmup 20
# 6. the ONNX Runtime CPU INT8 recipe against two narrower ones, on the shipped model's static 640 tile export
#    (why INT8-CPU gains little on an AVX2-only CPU; rows in bench/results/int8_cpu_variants.csv)
TMPB=$(mktemp -d)
$CLI export --out "$TMPB/b" --no-rtx > /dev/null
$PY bench/int8_cpu_variants.py --onnx "$TMPB/b/model.onnx" --data "$DATA" --tile-scale 1.5 --calib-images 24 --iters 10
rm -rf "$TMPB"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# 7. the README table (markdown) from this run's rows
$PY bench/cpu_table.py --since "$SINCE"
