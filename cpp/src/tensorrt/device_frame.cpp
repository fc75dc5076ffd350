// See device_frame.hpp.
#include "device_frame.hpp"

#include <cuda_runtime_api.h>

#include "cuda_memory.hpp"

namespace asfyolo {

bool download_device_frame(const void* device_data, int64_t stride_bytes, int64_t row_bytes, int32_t height,
                           std::vector<unsigned char>* host, std::string* err) {
  if (device_data == nullptr || host == nullptr) {
    *err = std::string(device_data == nullptr ? "image.data" : "host") + ": NULL";
    return false;
  }
  if (height <= 0 || row_bytes <= 0 || stride_bytes < row_bytes) {
    *err = "image: " + std::to_string(height) + " rows of " + std::to_string(row_bytes) + " bytes with stride " +
           std::to_string(stride_bytes) + " is not a frame (stride must be >= the row's bytes)";
    return false;
  }
  int device = -1;
  if (!trt::is_device_pointer(device_data, &device)) {
    *err = "image.data: not CUDA device memory; pass host frames to asfyolo_segment";
    return false;
  }
  host->resize(static_cast<size_t>(row_bytes) * static_cast<size_t>(height));
  return trt::cuda_ok(cudaMemcpy2D(host->data(), static_cast<size_t>(row_bytes), device_data,
                                   static_cast<size_t>(stride_bytes), static_cast<size_t>(row_bytes),
                                   static_cast<size_t>(height), cudaMemcpyDeviceToHost),
                      "cudaMemcpy2D (device frame)", err);
}

}  // namespace asfyolo
