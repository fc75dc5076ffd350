// The inference backend interface of the C runtime: what every backend (OpenVINO, TensorRT, TensorRT-RTX)
// implements, and all the rest of the runtime (tiling, pre-processing, NMS, mask assembly, painting) sees
// of it. Internal C++ only: nothing here crosses the C ABI (include/asfyolo.h).
//
// A backend runs the exported network on a batch of pre-processed tiles and hands back its named outputs
// as host float32 arrays, exactly as ONNX Runtime returns them for the same ONNX file:
//   raw graph (ModelInfo.end2end == false): "pred"   (n, anchors, 5 + nc + nm)  and "protos" (n, nm, h/4, w/4)
//   end-to-end graph (NMS inside):          "num_dets" (n, 1), "boxes" (n, k, 4), "scores" (n, k),
//                                           "classes" (n, k), "coeffs" (n, k, nm), "protos" (n, nm, h/4, w/4)
// (integer outputs are converted to float32 by the backend; half outputs too).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace asfyolo {

struct Output {
  std::string name;             // the graph's output name ("pred", "protos", "num_dets", ...)
  std::vector<int64_t> shape;   // row-major
  std::vector<float> data;      // host copy, float32, product(shape) values
};

struct BackendOptions {
  std::string device = "CPU";   // OpenVINO device name, or "cuda:N" for TensorRT
  int threads = 0;              // 0: the runtime's default (all cores)
  std::string precision;        // "" = as the file says; OpenVINO CPU: "f32" or "bf16" inference precision hint
  int requests = 0;             // asynchronous infer requests in flight (0: the backend chooses)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;                  // "openvino", "tensorrt", "tensorrt-rtx"
  // The network input: static height/width (0 = any multiple of 32) and static batch (0 = any).
  virtual int input_height() const = 0;
  virtual int input_width() const = 0;
  virtual int static_batch() const = 0;
  virtual bool end_to_end() const = 0;
  // Runs one batch. `input` is float32 NCHW (n, 3, h, w) in [0, 1], contiguous; host memory, or CUDA device
  // memory when `on_device` (GPU backends only; others return false with a message). For a static batch the
  // caller pads n up to static_batch(). Returns false and sets *err (one line naming the cause) on failure;
  // never throws across this call.
  virtual bool infer(const float* input, int n, int h, int w, bool on_device, std::vector<Output>* outputs,
                     std::string* err) = 0;
  // How many infer() calls may run at once (each on its own infer request / execution context): the
  // pipeline keeps up to this many batches in flight from as many threads. 1 = calls are serialised.
  virtual int parallel() const { return 1; }
  // Whether a dynamic-H/W model runs any static tile shape it is given (compiled once per shape), so that the
  // pipeline gives each image its own tile (fit_tile) when the caller sets no tile size. false: the default
  // tile (kDefaultTile), e.g. a TensorRT engine whose optimisation profile was built around one shape.
  virtual bool per_image_tiles() const { return false; }
};

// Factories, each compiled only when its runtime is found by CMake (ASFYOLO_WITH_OPENVINO /
// ASFYOLO_WITH_TENSORRT). `model` is the .xml/.onnx (OpenVINO) or .engine (TensorRT) file; `info_json` the
// ModelInfo JSON read from the bundle or sidecar. nullptr + *err on failure.
std::unique_ptr<Backend> open_openvino(const std::string& model, const std::string& info_json,
                                       const BackendOptions& opt, std::string* err);
std::unique_ptr<Backend> open_tensorrt(const std::string& engine, const std::string& info_json,
                                       const BackendOptions& opt, std::string* err);

}  // namespace asfyolo
