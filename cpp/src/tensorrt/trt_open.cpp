// Opening an engine: the sidecar and device checks, deserialisation, the I/O tensors, the slots (trt_backend.hpp).
#include <exception>
#include <fstream>
#include <iterator>
#include <new>

#include "../json.hpp"
#include "trt_backend.hpp"

namespace asfyolo {
namespace trt {

bool TensorRTBackend::read_plan(const std::string& path, std::vector<char>* plan, std::string* err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *err = "engine " + path + " does not exist or cannot be read (build one with `asfyolo-rt build BUNDLE`)";
    return false;
  }
  plan->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad() || plan->empty()) {
    *err = "engine " + path + " is empty or unreadable (an interrupted build?): rebuild it with `asfyolo-rt build`";
    return false;
  }
  return true;
}

bool TensorRTBackend::select_device(const std::string& device, RuntimeFacts* facts, std::string* err) {
  if (!parse_cuda_device(device, &device_)) {
    *err = "device '" + device + "': a " + kFlavour +
           " engine runs on a CUDA GPU; pass cuda:N (cuda:0 for the first)";
    return false;
  }
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    std::string why = status != cudaSuccess ? cudaGetErrorName(status) : "0 devices";
    *err = "no CUDA GPU is usable here (" + why + "): run " + kFlavour +
           " engines on a machine with an NVIDIA GPU and driver";
    return false;
  }
  if (device_ >= count) {
    *err = "device '" + device + "': CUDA device " + std::to_string(device_) + " requested, " + std::to_string(count) +
           " present";
    return false;
  }
  if (!cuda_ok(cudaSetDevice(device_), "cudaSetDevice", err)) return false;
  cudaDeviceProp prop{};
  if (!cuda_ok(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties", err)) return false;
  facts->device_name = prop.name;
  facts->cc_major = prop.major;
  facts->cc_minor = prop.minor;
  return true;
}

bool TensorRTBackend::inspect_tensors(const std::string& info_json, std::string* err) {
  int n = engine_->getNbIOTensors();
  bool have_input = false;
  for (int i = 0; i < n; ++i) {
    Tensor t;
    t.name = engine_->getIOTensorName(i);
    t.input = engine_->getTensorIOMode(t.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
    nvinfer1::DataType dt = engine_->getTensorDataType(t.name.c_str());
    if (!elem_of(dt, &t.elem)) {
      *err = file_ + ": tensor '" + t.name + "' has data type " + std::to_string(static_cast<int>(dt)) +
             ", which this runtime does not read; export the model with float, half or integer outputs";
      return false;
    }
    if (t.input) {
      if (have_input) {
        *err = file_ + ": more than one input (" + tensors_[input_index_].name + ", " + t.name +
               "); asfyolo engines take one image batch";
        return false;
      }
      have_input = true;
      input_index_ = tensors_.size();
    }
    tensors_.push_back(t);
  }
  if (!have_input) {
    *err = file_ + ": the engine has no input tensor";
    return false;
  }
  const Tensor& in = tensors_[input_index_];
  if (in.elem != Elem::kFloat && in.elem != Elem::kHalf) {
    *err = file_ + ": input '" + in.name + "' is " + elem_name(in.elem) + "; asfyolo engines take float32 or float16";
    return false;
  }
  nvinfer1::Dims shape = engine_->getTensorShape(in.name.c_str());
  if (shape.nbDims != 4 || (shape.d[1] != 3 && shape.d[1] != -1)) {
    *err = file_ + ": input '" + in.name + "' has shape " + dims_text(shape) + ", expected (batch, 3, height, width)";
    return false;
  }
  static_batch_ = shape.d[0] > 0 ? static_cast<int>(shape.d[0]) : 0;
  static_h_ = shape.d[2] > 0 ? static_cast<int>(shape.d[2]) : 0;
  static_w_ = shape.d[3] > 0 ? static_cast<int>(shape.d[3]) : 0;
  dynamic_ = static_batch_ == 0 || static_h_ == 0 || static_w_ == 0;
  if (dynamic_) {
    if (engine_->getNbOptimizationProfiles() < 1) {
      *err = file_ + ": dynamic input " + dims_text(shape) + " without an optimization profile; rebuild it";
      return false;
    }
    profile_min_ = engine_->getProfileShape(in.name.c_str(), 0, nvinfer1::OptProfileSelector::kMIN);
    profile_max_ = engine_->getProfileShape(in.name.c_str(), 0, nvinfer1::OptProfileSelector::kMAX);
  }

  auto has = [&](const char* name) {
    return std::any_of(tensors_.begin(), tensors_.end(), [&](const Tensor& t) { return !t.input && t.name == name; });
  };
  end2end_ = has("num_dets");
  Json info;
  std::string why;
  if (!info_json.empty()) {
    if (!parse_json(info_json, &info, &why)) {
      *err = file_ + ": its ModelInfo JSON is not valid JSON (" + why + ")";
      return false;
    }
    const Json* e2e = info.get("end2end");
    if (e2e != nullptr && e2e->kind == Json::Bool && e2e->b != end2end_) {
      *err = file_ + ": the ModelInfo says end2end=" + (end2end_ ? "false" : "true") + " but the engine " +
             (end2end_ ? "has" : "lacks") + " the num_dets output; rebuild it from the bundle's ONNX";
      return false;
    }
  }
  std::vector<std::string> missing;
  if (end2end_) {
    for (const char* name : kRowOutputs) {
      if (!has(name)) missing.emplace_back(name);
    }
    for (Tensor& t : tensors_) {
      t.copy_back = !t.input && std::any_of(std::begin(kRowOutputs), std::end(kRowOutputs),
                                            [&](const char* r) { return t.name == r; });
    }
  } else {
    for (const char* name : {"pred", "protos"}) {
      if (!has(name)) missing.emplace_back(name);
    }
    for (Tensor& t : tensors_) t.copy_back = !t.input;
  }
  if (!missing.empty()) {
    std::string list;
    for (const std::string& m : missing) list += (list.empty() ? "" : ", ") + m;
    *err = file_ + ": " + (end2end_ ? "an end-to-end engine" : "the engine") + " lacks the output(s) " + list +
           (end2end_ ? " (built from an earlier export): re-export with `asfyolo-rt export --end2end` and rebuild"
                     : ": build it from the bundle's model.onnx with `asfyolo-rt build`");
    return false;
  }
  return true;
}

bool TensorRTBackend::make_slots(int count, std::string* err) {
  for (int i = 0; i < count; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->context.reset(engine_->createExecutionContext());
    if (!slot->context) {
      if (!slots_.empty()) {  // device memory for one more context ran out: run with what we have
        logger_.clear();
        return true;
      }
      return fail(err, file_ + ": " + kFlavour + " could not create an execution context (out of GPU memory?)");
    }
    if (!cuda_ok(cudaStreamCreateWithFlags(&slot->stream, cudaStreamNonBlocking), "cudaStreamCreate", err)) {
      return false;
    }
    for (size_t t = 0; t < tensors_.size(); ++t) {
      slot->device.emplace_back(CudaBuffer::Where::kDevice);
      slot->pinned.emplace_back(CudaBuffer::Where::kPinned);
    }
    slots_.push_back(std::move(slot));
  }
  return true;
}

bool TensorRTBackend::open(const std::string& engine_path, const std::string& info_json, const BackendOptions& opt,
                           std::string* err) {
  file_ = file_name(engine_path);
  std::vector<char> plan;
  if (!read_plan(engine_path, &plan, err)) return false;
  EngineRecord record;
  if (!load_engine_record(engine_path, &record, err)) return false;
  std::string wanted = opt.precision == "f32" ? "fp32" : opt.precision == "f16" ? "fp16" : opt.precision;
  if (!wanted.empty() && wanted != record.precision) {
    *err = "precision '" + opt.precision + "': " + file_ + " was built as " + record.precision +
           " and a plan's precision is fixed; build the other precision with `asfyolo-rt build --precision " +
           opt.precision + "`";
    return false;
  }
  RuntimeFacts facts;
  facts.runtime = kFlavour;
  decode_lib_version(getInferLibVersion(), kWideVersion, &facts.major, &facts.minor, &facts.patch);
  if (facts.major != NV_TENSORRT_MAJOR) {
    *err = std::string("this asfyolo library was compiled against ") + kFlavour + " " +
           std::to_string(NV_TENSORRT_MAJOR) + ".x headers but loaded the " + std::to_string(facts.major) + "." +
           std::to_string(facts.minor) + " library: rebuild asfyolo against the installed " + kFlavour;
    return false;
  }
  if (!select_device(opt.device, &facts, err)) return false;
  std::string incompatible = check_compatibility(record, facts);
  if (!incompatible.empty()) {
    *err = incompatible;
    return false;
  }
  runtime_.reset(nvinfer1::createInferRuntime(logger_));
  if (!runtime_) return fail(err, std::string(kFlavour) + " could not create a runtime");
  if (record.dla_core >= 0) {  // a Jetson DLA engine: the runtime must target its core before deserialising
    int cores = runtime_->getNbDLACores();
    if (record.dla_core >= cores) {
      *err = file_ + " was built for DLA core " + std::to_string(record.dla_core) + ", this device has " +
             std::to_string(cores) + " DLA core(s): rebuild it with `asfyolo-rt build` (no --dla-core: the GPU)";
      return false;
    }
    runtime_->setDLACore(record.dla_core);
  }
  engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
  if (!engine_) {
    return fail(err, file_ + ": " + kFlavour + " cannot deserialize it (corrupt, truncated, or not a plan of this " +
                         "version; rebuild with `asfyolo-rt build`)");
  }
  plan.clear();
  plan.shrink_to_fit();
  if (!inspect_tensors(info_json, err)) return false;
  int count = opt.requests > 0 ? std::min(opt.requests, kMaxSlots) : kDefaultSlots;
  return make_slots(count, err);
}

}  // namespace trt

std::unique_ptr<Backend> open_tensorrt(const std::string& engine, const std::string& info_json,
                                       const BackendOptions& opt, std::string* err) {
  std::string local;
  if (err == nullptr) err = &local;
  try {
    auto backend = std::make_unique<trt::TensorRTBackend>();
    if (!backend->open(engine, info_json, opt, err)) return nullptr;
    return backend;
  } catch (const std::bad_alloc&) {
    *err = engine + ": out of host memory while opening it";
  } catch (const std::exception& e) {
    *err = engine + ": " + e.what();
  } catch (...) {
    *err = engine + ": unknown error while opening it";
  }
  return nullptr;
}

}  // namespace asfyolo
