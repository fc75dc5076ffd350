// A frame the caller holds in CUDA device memory (asfyolo_segment_device), brought to the host for the
// runtime's tiling and pre-processing, which run on the CPU. One cudaMemcpy2D: the pitched rows are packed
// (host stride = row bytes). Compiled with the TensorRT backend (ASFYOLO_WITH_TENSORRT), which links libcudart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asfyolo {

// Copies `height` rows of `row_bytes` bytes, `stride_bytes` apart, from device memory at `device_data` into
// *host (resized to height * row_bytes). False + *err (one line) when the pointer is not CUDA device or
// managed memory, the sizes are inconsistent (stride < row bytes, non-positive sizes), or the copy fails.
bool download_device_frame(const void* device_data, int64_t stride_bytes, int64_t row_bytes, int32_t height,
                           std::vector<unsigned char>* host, std::string* err);

}  // namespace asfyolo
