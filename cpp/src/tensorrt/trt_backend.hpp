// Internal to the TensorRT backend (trt_open.cpp opens an engine, trt_infer.cpp runs batches): the backend
// class, its per-context slots, the collecting logger and the TensorRT type helpers. Runs a plain plan built by
// `asfyolo-rt build` with the named-tensor API (setInputShape / setTensorAddress / enqueueV3), which standard
// TensorRT has from 8.5 and keeps in 10.x and 11.x, and TensorRT-RTX 1.x mirrors. The flavour is the one whose
// headers this is compiled against: TensorRT-RTX's NvInferVersion.h defines TRT_MAJOR_RTX.
//
// Opening checks the engine's sidecar (engine_record.hpp) against the loaded library and the CUDA device
// before deserialising, so that a plan built elsewhere fails with one line naming both sides and the fix.
// Each of parallel() slots owns an execution context, a CUDA stream, device buffers and pinned host buffers
// (grown when a larger shape arrives, never per call); infer() takes a free slot, so up to parallel() calls
// run at once from different threads. Outputs come back as float32 (half, bfloat16, int32/int64 converted).
// A device-pointer input (`on_device`) is bound as is: no copy.
#pragma once

#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../backend.hpp"
#include "convert.hpp"
#include "cuda_memory.hpp"
#include "engine_record.hpp"

#if !defined(TRT_MAJOR_RTX) && (NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 5))
#error "the asfyolo TensorRT backend needs the named-tensor API of TensorRT 8.5 or newer"
#endif

namespace asfyolo {
namespace trt {

#if defined(TRT_MAJOR_RTX)
constexpr const char* kFlavour = "TensorRT-RTX";
constexpr const char* kBackendName = "tensorrt-rtx";
#else
constexpr const char* kFlavour = "TensorRT";
constexpr const char* kBackendName = "tensorrt";
#endif
// getInferLibVersion() uses the encoding of NV_TENSORRT_VERSION: major*1000+... up to TensorRT 8.x,
// major*10000+... from 10.x (and in TensorRT-RTX). Read it off the header rather than off the major number.
constexpr bool kWideVersion = static_cast<int>(NV_TENSORRT_VERSION) / 10000 == NV_TENSORRT_MAJOR;

constexpr int kMaxSlots = 8;      // execution contexts (each holds its own activation memory)
constexpr int kDefaultSlots = 2;  // two batches in flight: one copying while the other computes
inline constexpr const char* kRowOutputs[] = {"num_dets", "boxes", "scores", "classes", "coeffs", "protos"};

// An ILogger that keeps the last errors TensorRT reported, so that a failed call's message can say why.
class CollectingLogger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, char const* msg) noexcept override {
    if (severity > Severity::kERROR || msg == nullptr) return;
    try {
      std::lock_guard<std::mutex> lock(mu_);
      if (messages_.size() >= 8) messages_.erase(messages_.begin());
      std::string line(msg);
      std::replace(line.begin(), line.end(), '\n', ' ');
      messages_.push_back(std::move(line));
    } catch (...) {  // never throw into TensorRT
    }
  }

  // The collected errors joined on one line (then forgotten); "" when there were none.
  std::string take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const std::string& m : messages_) out += (out.empty() ? "" : " | ") + m;
    messages_.clear();
    return out;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    messages_.clear();
  }

 private:
  std::mutex mu_;
  std::vector<std::string> messages_;
};

inline bool elem_of(nvinfer1::DataType t, Elem* e) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: *e = Elem::kFloat; return true;
    case nvinfer1::DataType::kHALF: *e = Elem::kHalf; return true;
    case nvinfer1::DataType::kINT8: *e = Elem::kInt8; return true;
    case nvinfer1::DataType::kINT32: *e = Elem::kInt32; return true;
    case nvinfer1::DataType::kBOOL: *e = Elem::kBool; return true;
    case nvinfer1::DataType::kUINT8: *e = Elem::kUInt8; return true;
#if NV_TENSORRT_MAJOR >= 10 || defined(TRT_MAJOR_RTX)
    case nvinfer1::DataType::kBF16: *e = Elem::kBFloat16; return true;
    case nvinfer1::DataType::kINT64: *e = Elem::kInt64; return true;
#endif
    default: return false;
  }
}

inline std::string dims_text(const nvinfer1::Dims& d) {
  std::string out = "[";
  for (int i = 0; i < d.nbDims; ++i) out += (i ? ", " : "") + std::to_string(static_cast<long long>(d.d[i]));
  return out + "]";
}

inline int64_t volume(const nvinfer1::Dims& d) {
  int64_t v = 1;
  for (int i = 0; i < d.nbDims; ++i) v *= static_cast<int64_t>(d.d[i]);
  return v;
}

struct Tensor {
  std::string name;
  bool input = false;
  Elem elem = Elem::kFloat;
  bool copy_back = true;  // outputs the runtime reads (an end-to-end engine's masks/label_map stay on the GPU)
};

// One execution context with its stream and buffers; used by one infer() call at a time.
struct Slot {
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  cudaStream_t stream = nullptr;
  std::vector<CudaBuffer> device;  // per tensor, in the order of TensorRTBackend::tensors_
  std::vector<CudaBuffer> pinned;
  bool busy = false;

  Slot() = default;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot() {
    context.reset();
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

class TensorRTBackend : public Backend {
 public:
  ~TensorRTBackend() override {
    cudaSetDevice(device_);  // this thread may have another current device: free on the engine's
    slots_.clear();          // contexts before the engine, the engine before the runtime
    engine_.reset();
    runtime_.reset();
  }

  bool open(const std::string& engine_path, const std::string& info_json, const BackendOptions& opt,
            std::string* err);

  const char* name() const override { return kBackendName; }
  int input_height() const override { return static_h_; }
  int input_width() const override { return static_w_; }
  int static_batch() const override { return static_batch_; }
  bool end_to_end() const override { return end2end_; }
  int parallel() const override { return static_cast<int>(slots_.size()); }

  bool infer(const float* input, int n, int h, int w, bool on_device, std::vector<Output>* outputs,
             std::string* err) override {
    std::string local;
    if (err == nullptr) err = &local;
    try {
      return run(input, n, h, w, on_device, outputs, err);
    } catch (const std::bad_alloc&) {
      *err = file_ + ": out of host memory while running a batch of " + std::to_string(n);
    } catch (const std::exception& e) {
      *err = file_ + ": " + e.what();
    } catch (...) {
      *err = file_ + ": unknown error while running a batch";
    }
    return false;
  }

 private:
  bool fail(std::string* err, const std::string& what) {
    std::string why = logger_.take();
    *err = why.empty() ? what : what + ": " + why;
    return false;
  }
  bool read_plan(const std::string& path, std::vector<char>* plan, std::string* err);
  bool select_device(const std::string& device, RuntimeFacts* facts, std::string* err);
  bool inspect_tensors(const std::string& info_json, std::string* err);
  bool make_slots(int count, std::string* err);
  bool check_shape(int n, int h, int w, std::string* err) const;
  bool bind_input(Slot* slot, const float* input, size_t count, bool on_device, std::string* err);
  bool run(const float* input, int n, int h, int w, bool on_device, std::vector<Output>* outputs,
           std::string* err);
  Slot* acquire();
  void release(Slot* slot);

  CollectingLogger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::mutex slots_mu_;
  std::condition_variable slot_free_;

  std::string file_;  // the engine's file name, for messages
  int device_ = 0;
  std::vector<Tensor> tensors_;
  size_t input_index_ = 0;
  nvinfer1::Dims profile_min_{}, profile_max_{};
  bool dynamic_ = false;
  int static_batch_ = 0, static_h_ = 0, static_w_ = 0;
  bool end2end_ = false;
};

}  // namespace trt
}  // namespace asfyolo
