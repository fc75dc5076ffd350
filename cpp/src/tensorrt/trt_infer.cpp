// Running a batch: shape checks, a free slot, input binding (host copy through pinned memory, or the caller's
// device pointer as is), enqueueV3, outputs back to the host as float32 (trt_backend.hpp).
#include <cstring>

#include "trt_backend.hpp"

namespace asfyolo {
namespace trt {

bool TensorRTBackend::check_shape(int n, int h, int w, std::string* err) const {
  if (static_batch_ > 0 && n != static_batch_) {
    *err = file_ + " has a static batch of " + std::to_string(static_batch_) + ", got " + std::to_string(n) +
           ": pad the batch to " + std::to_string(static_batch_);
    return false;
  }
  if ((static_h_ > 0 && h != static_h_) || (static_w_ > 0 && w != static_w_)) {
    *err = file_ + " takes " + std::to_string(static_h_) + "x" + std::to_string(static_w_) + " tiles, got " +
           std::to_string(h) + "x" + std::to_string(w);
    return false;
  }
  if (dynamic_) {
    const int64_t want[4] = {n, 3, h, w};
    for (int i = 0; i < 4 && i < profile_min_.nbDims && i < profile_max_.nbDims; ++i) {
      if (want[i] < profile_min_.d[i] || want[i] > profile_max_.d[i]) {
        *err = file_ + ": input (" + std::to_string(n) + ", 3, " + std::to_string(h) + ", " + std::to_string(w) +
               ") is outside its optimization profile " + dims_text(profile_min_) + " .. " +
               dims_text(profile_max_) + "; rebuild with a wider profile";
        return false;
      }
    }
  }
  return true;
}

Slot* TensorRTBackend::acquire() {
  std::unique_lock<std::mutex> lock(slots_mu_);
  Slot* found = nullptr;
  slot_free_.wait(lock, [&] {
    for (auto& s : slots_) {
      if (!s->busy) {
        found = s.get();
        return true;
      }
    }
    return false;
  });
  found->busy = true;
  return found;
}

void TensorRTBackend::release(Slot* slot) {
  {
    std::lock_guard<std::mutex> lock(slots_mu_);
    slot->busy = false;
  }
  slot_free_.notify_one();
}

bool TensorRTBackend::bind_input(Slot* slot, const float* input, size_t count, bool on_device, std::string* err) {
  const Tensor& in = tensors_[input_index_];
  nvinfer1::IExecutionContext* ctx = slot->context.get();
  if (on_device) {
    if (in.elem != Elem::kFloat) {
      *err = file_ + ": its input is float16, so a float32 device pointer cannot be bound as is; pass host memory";
      return false;
    }
    int where = -1;
    if (!is_device_pointer(input, &where) || where != device_) {
      *err = "input: on_device is set but the pointer is not CUDA memory of device cuda:" + std::to_string(device_);
      return false;
    }
    // setTensorAddress, not setInputTensorAddress: the one call every flavour has (TensorRT-RTX's API surface as
    // its Python bindings show it); TensorRT never writes to an input tensor.
    if (!ctx->setTensorAddress(in.name.c_str(), const_cast<float*>(input))) {
      return fail(err, file_ + ": setTensorAddress('" + in.name + "') failed for the device input");
    }
    return true;
  }
  size_t bytes = count * elem_size(in.elem);
  CudaBuffer& host = slot->pinned[input_index_];
  CudaBuffer& dev = slot->device[input_index_];
  if (!host.reserve(bytes, err) || !dev.reserve(bytes, err)) return false;
  if (in.elem == Elem::kFloat) {
    std::memcpy(host.get(), input, bytes);
  } else {
    uint16_t* dst = static_cast<uint16_t*>(host.get());
    for (size_t i = 0; i < count; ++i) dst[i] = float_to_half(input[i]);
  }
  if (!cuda_ok(cudaMemcpyAsync(dev.get(), host.get(), bytes, cudaMemcpyHostToDevice, slot->stream),
               "cudaMemcpyAsync (input)", err)) {
    return false;
  }
  if (!ctx->setTensorAddress(in.name.c_str(), dev.get())) return fail(err, file_ + ": setTensorAddress failed");
  return true;
}

bool TensorRTBackend::run(const float* input, int n, int h, int w, bool on_device, std::vector<Output>* outputs,
                          std::string* err) {
  if (input == nullptr || outputs == nullptr) {
    *err = std::string(input == nullptr ? "input" : "outputs") + ": null pointer";
    return false;
  }
  if (n <= 0 || h <= 0 || w <= 0 || n > 4096 || h > 16384 || w > 16384) {
    *err = "input: batch " + std::to_string(n) + " of " + std::to_string(h) + "x" + std::to_string(w) +
           " is not a valid tile batch";
    return false;
  }
  if (!check_shape(n, h, w, err)) return false;
  Slot* slot = acquire();
  struct Lease {  // on every return: no work of this call left on the stream (the caller may free its input)
    TensorRTBackend* self;
    Slot* slot;
    ~Lease() {
      cudaStreamSynchronize(slot->stream);
      self->release(slot);
    }
  } lease{this, slot};
  if (!cuda_ok(cudaSetDevice(device_), "cudaSetDevice", err)) return false;
  nvinfer1::IExecutionContext* ctx = slot->context.get();
  const Tensor& in = tensors_[input_index_];
  if (!ctx->setInputShape(in.name.c_str(), nvinfer1::Dims4(n, 3, h, w))) {
    return fail(err, file_ + ": input shape (" + std::to_string(n) + ", 3, " + std::to_string(h) + ", " +
                         std::to_string(w) + ") rejected");
  }
  size_t count = static_cast<size_t>(n) * 3u * static_cast<size_t>(h) * static_cast<size_t>(w);
  if (!bind_input(slot, input, count, on_device, err)) return false;

  std::vector<nvinfer1::Dims> shapes(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    if (t.input) continue;
    shapes[i] = ctx->getTensorShape(t.name.c_str());
    if (shapes[i].nbDims < 0 || volume(shapes[i]) < 0) {
      *err = file_ + ": output '" + t.name + "' has a data-dependent shape " + dims_text(shapes[i]) +
             ", which this runtime does not read; export the end-to-end model with fixed-size outputs";
      return false;
    }
    size_t bytes = static_cast<size_t>(volume(shapes[i])) * elem_size(t.elem);
    if (!slot->device[i].reserve(bytes, err)) return false;
    if (t.copy_back && !slot->pinned[i].reserve(bytes, err)) return false;
    if (!ctx->setTensorAddress(t.name.c_str(), slot->device[i].get())) {
      return fail(err, file_ + ": setTensorAddress('" + t.name + "') failed");
    }
  }
  if (!ctx->enqueueV3(slot->stream)) return fail(err, file_ + ": " + kFlavour + " failed to enqueue the batch");
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    if (t.input || !t.copy_back) continue;
    size_t bytes = static_cast<size_t>(volume(shapes[i])) * elem_size(t.elem);
    if (!cuda_ok(cudaMemcpyAsync(slot->pinned[i].get(), slot->device[i].get(), bytes, cudaMemcpyDeviceToHost,
                                 slot->stream),
                 "cudaMemcpyAsync (output)", err)) {
      return false;
    }
  }
  if (!cuda_ok(cudaStreamSynchronize(slot->stream), "cudaStreamSynchronize (inference)", err)) {
    std::string why = logger_.take();
    if (!why.empty()) *err += ": " + why;
    return false;
  }
  outputs->clear();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    if (t.input || !t.copy_back) continue;
    Output out;
    out.name = t.name;
    for (int d = 0; d < shapes[i].nbDims; ++d) out.shape.push_back(static_cast<int64_t>(shapes[i].d[d]));
    out.data.resize(static_cast<size_t>(volume(shapes[i])));
    to_float(t.elem, slot->pinned[i].get(), out.data.size(), out.data.data());
    outputs->push_back(std::move(out));
  }
  return true;
}

}  // namespace trt
}  // namespace asfyolo
