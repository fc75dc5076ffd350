"""asfyolo_rt.kernels: fused inference kernels, each a quartet of op, PyTorch reference, test, benchmark.

- `asfyolo_rt.kernels.cpam`: `cpam(t, s, eca_weight, reduce_weight, reduce_bias, h_weight, w_weight,
  impl=...)`, inference CPAM (ASF-YOLO.md §3.3) in two passes over the feature maps.
- `asfyolo_rt.kernels.mask_assembly`: `mask_assembly(protos, coeffs, boxes, batch_idx, scores,
  out_size, threshold=, scale=, pad=, output="label_map" | "masks" | "dense", impl=...)`, box-bounded
  prototype-mask assembly (ASF-YOLO.md §6.2) with a label map that never holds N full masks.
- `asfyolo_rt.kernels.aot`: `compile_kernels(archs, out_dir)`, PTX/cubin + manifest.json without a
  GPU (`asfyolo-rt kernels compile`).

`impl="auto"` runs Triton on CUDA tensors and the PyTorch reference otherwise; `impl="triton"` raises
KernelUnavailableError where Triton cannot run. Triton is imported only when a kernel is launched.
"""
