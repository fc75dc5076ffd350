// What an engine's sidecar (`<engine>.json`, written by `asfyolo-rt build`) records about the TensorRT it was
// built with and the GPU it was built for, and the check that it can run here. A TensorRT plan runs only
// on the TensorRT version that built it and (standard TensorRT) on the GPU architecture it was built on;
// TensorRT-RTX builds ahead of time for a list of architectures. Checking the sidecar first turns
// TensorRT's own opaque deserialisation failure into one line that names the file, both sides and the fix,
// exactly as the Python runner (asfyolo_rt/infer/tensorrt.py) does. Pure C++17, no TensorRT or CUDA.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asfyolo {
namespace trt {

struct EngineRecord {
  std::string sidecar;             // the sidecar's path (for messages)
  std::string engine;              // the plan's file name as recorded
  std::string format;              // "asfyolo-rt-engine/3"
  std::string runtime;             // "TensorRT" or "TensorRT-RTX"
  std::string tensorrt_version;    // "10.3.0.30", or TensorRT-RTX "1.7.1.116"
  std::string compute_capability;  // "8.7" (standard TensorRT: the GPU it was built on); "" for TensorRT-RTX
  std::string device;              // the GPU's name when built on one
  std::vector<std::string> targets;  // TensorRT-RTX target architectures ["sm86", "sm89"]; [] = its default set
  std::string precision;           // "fp32" | "fp16" | "int8"
  bool end2end = false;            // NMS inside the engine
  int dla_core = -1;               // Jetson: the DLA core it was built for (-1: the GPU)
};

// What this process offers: the TensorRT flavour compiled in, the version of the library loaded at run time,
// and the CUDA device the engine is to run on.
struct RuntimeFacts {
  std::string runtime = "TensorRT";  // "TensorRT" or "TensorRT-RTX"
  int major = 0, minor = 0, patch = 0;
  int cc_major = 0, cc_minor = 0;
  std::string device_name;
};

// `<engine>.json` beside the plan (model.int8.engine -> model.int8.engine.json).
std::string sidecar_path_for(const std::string& engine_path);

// The last component of a path ("/a/b/model.engine" -> "model.engine"), for messages.
std::string file_name(const std::string& path);

// Parses a sidecar's text. False + *err (one line naming `sidecar_path`) when it is not JSON, has an unknown
// format (written by a newer asfyolo-rt), lacks a required key, or names an unknown runtime.
bool parse_engine_record(const std::string& text, const std::string& sidecar_path, EngineRecord* out,
                         std::string* err);

// Reads and parses the sidecar of `engine_path`; a missing file is an error naming `asfyolo-rt build`.
bool load_engine_record(const std::string& engine_path, EngineRecord* out, std::string* err);

// "" when the engine recorded in `rec` can run with `facts`; else one line naming the engine, what it was
// built for, what this machine is, and how to rebuild. Checks, in order: the runtime flavour, the version
// (major.minor.patch must be equal: TensorRT refuses other versions' plans), the GPU (compute capability
// equal for standard TensorRT; for TensorRT-RTX this GPU's smXY among the targets, or >= 8.0 for its
// default target set, which leaves out Turing).
std::string check_compatibility(const EngineRecord& rec, const RuntimeFacts& facts);

// "10.3.0.30" -> 10, 3, 0 (the build number is ignored; a missing patch reads 0). False if not a version.
bool parse_version(const std::string& text, int* major, int* minor, int* patch);

// getInferLibVersion()'s integer -> major.minor.patch. TensorRT 8.x encodes major*1000 + minor*100 + patch;
// TensorRT >= 10 and TensorRT-RTX encode major*10000 + minor*100 + patch (`wide`).
void decode_lib_version(int32_t version, bool wide, int* major, int* minor, int* patch);

// "cuda:1" / "gpu:1" / "1" -> 1; "", "cuda", "gpu" -> 0. False for anything else (e.g. "CPU").
bool parse_cuda_device(const std::string& device, int* index);

}  // namespace trt
}  // namespace asfyolo
