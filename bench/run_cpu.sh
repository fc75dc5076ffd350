#!/usr/bin/env bash
# The CPU measurements quoted in the README (issue: parity and bench). Run from the repository root
# with nothing else loading the machine. Rows append to bench/results/cpu.csv (one row per backend,
# precision and batch, environment included), so runs on other machines combine into one table.
set -euo pipefail
CLI=${CLI:-.venv/bin/asfyolo-rt}
DATA=${DATA:-../shared/datasets/DSB2018}
OUT=bench/results
mkdir -p "$OUT"

# 1. the shipped DSB2018 model at its training size: PyTorch eager vs ONNX Runtime FP32 / INT8 (both flavours)
$CLI bench --backend torch,onnxruntime --precision fp32,int8,int8-cpu --data "$DATA" --iters 30 \
    --csv "$OUT/cpu.csv" --plot "$OUT/cpu_shipped.png"
# 2. the paper's l model (random weights: speed does not depend on them) at 320 and 640
$CLI bench --model l --img-size 320 --backend torch,onnxruntime --precision fp32,int8,int8-cpu --data "$DATA" \
    --iters 10 --csv "$OUT/cpu.csv" --plot "$OUT/cpu_l320.png"
$CLI bench --model l --img-size 640 --backend torch,onnxruntime --precision fp32 --data "$DATA" \
    --iters 5 --warmup 1 --csv "$OUT/cpu.csv" --plot "$OUT/cpu_l640.png"
# 3. post-processing share at 50, 300 and 1,000 cells (CPU path: OpenCV NMS + box-bounded mask assembly)
for cells in 50 300 1000; do
    $CLI bench --backend onnxruntime --precision int8-cpu --cells "$cells" --data "$DATA" --iters 20 --csv "$OUT/cpu.csv"
done
