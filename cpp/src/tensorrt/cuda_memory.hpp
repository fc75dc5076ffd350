// CUDA runtime helpers of the TensorRT backend: checked calls that turn a cudaError_t into one line, and
// growable device / pinned-host buffers (allocated once, grown only when a larger shape arrives).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace asfyolo {
namespace trt {

// True on cudaSuccess; else false and *err = "CUDA error in <what>: <name> (<description>)".
inline bool cuda_ok(cudaError_t status, const char* what, std::string* err) {
  if (status == cudaSuccess) return true;
  *err = std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) + " (" +
         cudaGetErrorString(status) + ")";
  return false;
}

// Whether `ptr` is CUDA device or managed memory; *device = its device. Plain host memory is not (CUDA < 11
// reports it as an error, which is cleared here: it is not sticky).
inline bool is_device_pointer(const void* ptr, int* device) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  *device = attr.device;
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

// Memory from cudaMalloc (kDevice) or cudaMallocHost (kPinned: page-locked host memory, so that copies
// run asynchronously on the stream). Freed on destruction; not copyable.
class CudaBuffer {
 public:
  enum class Where { kDevice, kPinned };
  explicit CudaBuffer(Where where = Where::kDevice) : where_(where) {}
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;
  CudaBuffer(CudaBuffer&& other) noexcept : where_(other.where_), ptr_(other.ptr_), bytes_(other.bytes_) {
    other.ptr_ = nullptr;
    other.bytes_ = 0;
  }
  ~CudaBuffer() { release(); }

  // Makes the buffer at least `bytes` large (at least 1 byte: TensorRT wants a non-null address even for an
  // empty tensor). Existing contents are not kept.
  bool reserve(size_t bytes, std::string* err) {
    if (bytes == 0) bytes = 1;
    if (ptr_ != nullptr && bytes_ >= bytes) return true;
    release();
    cudaError_t status = where_ == Where::kDevice ? cudaMalloc(&ptr_, bytes) : cudaMallocHost(&ptr_, bytes);
    if (status != cudaSuccess) {
      ptr_ = nullptr;
      return cuda_ok(status, where_ == Where::kDevice ? "cudaMalloc" : "cudaMallocHost", err);
    }
    bytes_ = bytes;
    return true;
  }

  void* get() const { return ptr_; }

 private:
  void release() {
    if (ptr_ != nullptr) {
      if (where_ == Where::kDevice) {
        cudaFree(ptr_);
      } else {
        cudaFreeHost(ptr_);
      }
    }
    ptr_ = nullptr;
    bytes_ = 0;
  }

  Where where_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace trt
}  // namespace asfyolo
