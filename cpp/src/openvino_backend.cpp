// The OpenVINO backend (backend.hpp): an exported ONNX file or an IR on the CPU. FP32 by an explicit
// INFERENCE_PRECISION_HINT f32 (OpenVINO would otherwise pick bf16 on BF16 CPUs by itself), bf16 only where
// asked and the CPU has native BF16 (avx512_bf16 / amx_bf16), an NNCF INT8 IR as it is. Throughput mode:
// several infer requests (one per CPU stream) run at once, each from its own pipeline worker thread. A model of
// dynamic H/W is compiled once per tile shape (per_image_tiles: the pipeline gives each image its fit_tile).
#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <openvino/openvino.hpp>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "backend.hpp"

namespace asfyolo {
namespace {

std::set<std::string> cpu_flags() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  std::set<std::string> out;
  while (std::getline(f, line)) {
    if (line.rfind("flags", 0) == 0) {
      std::istringstream ss(line.substr(line.find(':') + 1));
      std::string w;
      while (ss >> w) out.insert(w);
      break;
    }
  }
  return out;
}

// The process's one OpenVINO Core, used by every backend (Core is thread-safe for read_model and compile_model),
// created on first use and never deleted, on purpose. Each Core loads its own CPU plugin; the plugin installs an
// alternate signal stack on the thread that loads it and, when unloaded with its Core, puts back the stack it
// found, even one that an older plugin has unmapped since (OpenVINO's SigAltStackSetup). One Core per segmenter,
// freed oldest first, left that thread's sigaltstack dangling, and the host's next signal handled on it (Ctrl-C,
// SIGTERM with SA_ONSTACK) was a SIGSEGV without a trace (tests/cpp/test_signal_after_free.py). A Core that is
// never destroyed loads the plugin once and never unloads it, not even in static destruction at exit.
ov::Core& shared_core() {
  static ov::Core* const core = new ov::Core();  // a throw here is retried at the next call
  return *core;
}

// OpenVINO's CACHE_DIR as Python's backend gives it (asfyolo_rt.infer.openvino._cache_config): the user cache
// folder $ASFYOLO_RT_CACHE, else ($XDG_CACHE_HOME, else ~/.cache)/asfyolo-rt, its openvino/ subfolder, so that a
// second process loads compiled models instead of compiling them; for models inside that folder only
// (asfyolo-rt's own exports: a model the caller names leaves nothing in the home folder), every model when
// ASFYOLO_RT_OV_CACHE is 1/true/yes/on, none when it is 0/false/no/off; none on any error. The folder goes into
// each compile's config, not onto the shared Core, where it would apply to every segmenter's models.
std::string cache_folder(const std::string& model_path) {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  std::string off = env("ASFYOLO_RT_OV_CACHE");
  for (char& c : off) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  off.erase(0, off.find_first_not_of(" \t"));
  off.erase(off.find_last_not_of(" \t") + 1);
  if (off == "0" || off == "false" || off == "no" || off == "off") return "";
  const bool always = off == "1" || off == "true" || off == "yes" || off == "on";
  std::filesystem::path root;
  if (!env("ASFYOLO_RT_CACHE").empty()) {
    root = std::filesystem::path(env("ASFYOLO_RT_CACHE"));
  } else if (!env("XDG_CACHE_HOME").empty()) {
    root = std::filesystem::path(env("XDG_CACHE_HOME")) / "asfyolo-rt";
  } else if (!env("HOME").empty()) {
    root = std::filesystem::path(env("HOME")) / ".cache" / "asfyolo-rt";
  } else {
    return "";
  }
  const std::filesystem::path folder = root / "openvino";
  try {
    std::error_code ec;
    if (!always) {  // only models asfyolo-rt keeps in its own cache folder
      auto r = std::filesystem::weakly_canonical(root, ec);
      auto m = std::filesystem::weakly_canonical(std::filesystem::path(model_path), ec);
      if (ec) return "";
      auto rel = m.lexically_relative(r);
      if (rel.empty() || *rel.begin() == "..") return "";  // outside the folder
    }
    std::filesystem::create_directories(folder, ec);
    if (ec) return "";  // a read-only home: compile every time
    return folder.string();
  } catch (const std::exception&) {
    return "";
  }
}

// One compiled model (one input shape) and its infer requests, each used by one thread at a time.
struct Pool {
  ov::CompiledModel compiled;
  std::vector<ov::InferRequest> requests;
  std::vector<bool> free;
  std::vector<std::string> out_names;
  std::mutex mu;
  std::condition_variable cv;

  Pool(ov::CompiledModel c, int requested) : compiled(std::move(c)) {
    int n = requested > 0 ? requested : static_cast<int>(compiled.get_property(ov::optimal_number_of_infer_requests));
    n = std::max(1, std::min(n, 64));
    for (int k = 0; k < n; ++k) requests.push_back(compiled.create_infer_request());
    free.assign(n, true);
    for (const auto& o : compiled.outputs()) out_names.push_back(o.get_any_name());
  }
  size_t acquire() {
    std::unique_lock<std::mutex> lock(mu);
    size_t k = 0;
    cv.wait(lock, [&] {
      for (k = 0; k < free.size(); ++k)
        if (free[k]) return true;
      return false;
    });
    free[k] = false;
    return k;
  }
  void release(size_t k) {
    {
      std::lock_guard<std::mutex> lock(mu);
      free[k] = true;
    }
    cv.notify_one();
  }
};

// A static model has one pool. A model of dynamic H and W is reshaped to each tile shape it is given and
// compiled once per shape (a static shape runs faster than a dynamic compile), each with its own pool; the
// batch dimension stays as the file has it.
class OpenVinoBackend : public Backend {
 public:
  const char* name() const override { return "openvino"; }
  int input_height() const override { return h_; }
  int input_width() const override { return w_; }
  int static_batch() const override { return b_; }
  bool end_to_end() const override { return e2e_; }
  int parallel() const override { return parallel_; }
  bool per_image_tiles() const override { return true; }

  bool open(const std::string& model_path, const BackendOptions& opt, std::string* err) {
    try {
      path_ = model_path;
      model_ = shared_core().read_model(model_path);
      if (model_->inputs().size() != 1) {
        *err = model_path + ": expected one input, found " + std::to_string(model_->inputs().size());
        return false;
      }
      std::set<std::string> outs;
      for (const auto& o : model_->outputs())
        for (const auto& n : o.get_names()) outs.insert(n);
      e2e_ = outs.count("num_dets") > 0;
      if (!outs.count("protos") || (!e2e_ && !outs.count("pred"))) {
        *err = model_path + ": expected outputs 'pred' and 'protos' (or an end-to-end graph's rows); not an "
                            "asfyolo-rt export";
        return false;
      }
      const ov::PartialShape ps = model_->input().get_partial_shape();
      if (ps.rank().is_dynamic() || ps.rank().get_length() != 4) {
        *err = model_path + ": expected an NCHW input";
        return false;
      }
      auto dim = [&](int i) { return ps[i].is_static() ? static_cast<int>(ps[i].get_length()) : 0; };
      batch_dim_ = ps[0];
      b_ = dim(0);
      h_ = dim(2);
      w_ = dim(3);
      if (!h_ != !w_) {  // one side fixed, the other not: neither a static tile nor any tile fits it
        *err = model_path + ": input " + ps.to_string() + " has one dynamic side; export it with both sides fixed "
                            "or both dynamic";
        return false;
      }
      bool quantized = false;
      for (const auto& op : model_->get_ops())
        if (std::string(op->get_type_name()) == "FakeQuantize") { quantized = true; break; }
      std::string precision = opt.precision.empty() ? "fp32" : opt.precision;
      if (precision != "fp32" && precision != "bf16" && precision != "int8") {
        *err = "options.precision '" + precision + "' for OpenVINO: expected fp32, bf16 or int8";
        return false;
      }
      if (precision == "bf16") {
        auto f = cpu_flags();
        if (!f.count("avx512_bf16") && !f.count("amx_bf16")) {
          *err = "options.precision bf16: this CPU has no native BF16 (avx512_bf16 or amx_bf16 in /proc/cpuinfo); "
                 "use fp32";
          return false;
        }
        if (quantized) {
          *err = model_path + " is an INT8 model; precision bf16 does not apply";
          return false;
        }
      }
      if (precision == "int8" && !quantized) {
        *err = "options.precision int8: " + model_path + " is not quantized; use the bundle's model.int8-openvino.xml";
        return false;
      }
      config_ = {{ov::hint::inference_precision.name(), precision == "bf16" ? ov::element::bf16 : ov::element::f32},
                 {ov::hint::performance_mode.name(), ov::hint::PerformanceMode::THROUGHPUT}};
      // no pinning: on a machine shared with other processes a stream pinned to a busy core waits for it
      config_[ov::hint::enable_cpu_pinning.name()] = false;
      if (opt.threads > 0) config_[ov::inference_num_threads.name()] = opt.threads;
      if (opt.requests > 0) config_[ov::num_streams.name()] = ov::streams::Num(opt.requests);
      device_ = opt.device.empty() ? "CPU" : opt.device;
      requests_ = opt.requests;
      const std::string cache = cache_folder(model_path);
      if (!cache.empty()) config_[ov::cache_dir.name()] = cache;
      // compiled as read: a static model's one pool; a dynamic one's properties (how many requests run at once),
      // and any error of the model shows here rather than at the first frame
      auto first = std::make_shared<Pool>(shared_core().compile_model(model_, device_, config_), requests_);
      parallel_ = static_cast<int>(first->requests.size());
      if (h_ > 0) {
        pools_[{h_, w_}] = std::move(first);
        order_.push_back({h_, w_});
      }
      return true;
    } catch (const std::exception& e) {
      std::string m = e.what();
      *err = "OpenVINO cannot load " + model_path + ": " + m.substr(0, m.find('\n'));
      return false;
    }
  }

  bool infer(const float* input, int n, int h, int w, bool on_device, std::vector<Output>* outputs,
             std::string* err) override {
    if (on_device) {
      *err = "openvino: device (CUDA) input is not supported; pass host memory";
      return false;
    }
    if ((b_ && n != b_) || (h_ && h != h_) || (w_ && w != w_)) {
      *err = "openvino: input " + std::to_string(n) + "x3x" + std::to_string(h) + "x" + std::to_string(w) +
             " does not fit the model's fixed input";
      return false;
    }
    std::shared_ptr<Pool> pool = pool_for(h, w, err);  // held until this call ends, even if evicted meanwhile
    if (!pool) return false;
    size_t k = pool->acquire();
    bool ok = true;
    try {
      ov::InferRequest& r = pool->requests[k];
      ov::Tensor in(ov::element::f32, ov::Shape{size_t(n), 3, size_t(h), size_t(w)}, const_cast<float*>(input));
      r.set_input_tensor(in);
      r.start_async();
      r.wait();
      outputs->clear();
      for (size_t i = 0; i < pool->out_names.size(); ++i) {
        ov::Tensor t = r.get_output_tensor(i);
        Output o;
        o.name = pool->out_names[i];
        for (size_t d : t.get_shape()) o.shape.push_back(static_cast<int64_t>(d));
        o.data.resize(t.get_size());
        if (t.get_element_type() == ov::element::f32) {
          std::copy(t.data<const float>(), t.data<const float>() + t.get_size(), o.data.begin());
        } else if (t.get_element_type() == ov::element::i64) {
          for (size_t j = 0; j < t.get_size(); ++j) o.data[j] = static_cast<float>(t.data<const int64_t>()[j]);
        } else if (t.get_element_type() == ov::element::i32) {
          for (size_t j = 0; j < t.get_size(); ++j) o.data[j] = static_cast<float>(t.data<const int32_t>()[j]);
        } else if (t.get_element_type() == ov::element::f16) {
          const ov::float16* p = t.data<const ov::float16>();
          for (size_t j = 0; j < t.get_size(); ++j) o.data[j] = static_cast<float>(p[j]);
        } else {
          *err = "openvino: output " + o.name + " has an unsupported element type";
          ok = false;
          break;
        }
        outputs->push_back(std::move(o));
      }
    } catch (const std::exception& e) {
      std::string m = e.what();
      *err = "openvino: inference failed: " + m.substr(0, m.find('\n'));
      ok = false;
    }
    pool->release(k);
    return ok;
  }

 private:
  // The pool of tiles of h x w: compiled on first use (one thread compiles, others needing a pool wait).
  // The pool of tiles h x w: compiled on first use (outside the lock: other shapes' tiles keep running), at most
  // kMaxShapes kept for a dynamic model (the least recently compiled go; a call in flight keeps its own reference),
  // as Python's OpenVinoBackend (MAX_SHAPES) does.
  std::shared_ptr<Pool> pool_for(int h, int w, std::string* err) {
    {
      std::lock_guard<std::mutex> lock(pools_mu_);
      auto it = pools_.find({h, w});
      if (it != pools_.end()) return it->second;
    }
    std::shared_ptr<Pool> pool;
    try {
      std::shared_ptr<ov::Model> m = model_->clone();
      m->reshape(ov::PartialShape{batch_dim_, 3, h, w});
      pool = std::make_shared<Pool>(shared_core().compile_model(m, device_, config_), requests_);
    } catch (const std::exception& e) {
      std::string msg = e.what();
      *err = "OpenVINO cannot compile " + path_ + " for " + std::to_string(h) + "x" + std::to_string(w) +
             " tiles: " + msg.substr(0, msg.find('\n'));
      return nullptr;
    }
    std::lock_guard<std::mutex> lock(pools_mu_);
    auto it = pools_.find({h, w});
    if (it != pools_.end()) return it->second;  // another thread compiled it meanwhile: one pool per shape
    pools_[{h, w}] = pool;
    order_.push_back({h, w});
    while (order_.size() > kMaxShapes) {
      pools_.erase(order_.front());
      order_.erase(order_.begin());
    }
    return pool;
  }

  std::shared_ptr<ov::Model> model_;
  std::string path_, device_;
  ov::AnyMap config_;
  ov::Dimension batch_dim_;
  int requests_ = 0, parallel_ = 1;
  static constexpr size_t kMaxShapes = 8;
  std::map<std::pair<int, int>, std::shared_ptr<Pool>> pools_;  // by tile (h, w)
  std::vector<std::pair<int, int>> order_;  // the shapes of pools_, oldest first
  std::mutex pools_mu_;
  int h_ = 0, w_ = 0, b_ = 0;
  bool e2e_ = false;
};

}  // namespace

std::unique_ptr<Backend> open_openvino(const std::string& model, const std::string& /*info_json*/,
                                       const BackendOptions& opt, std::string* err) {
  auto b = std::make_unique<OpenVinoBackend>();
  if (!b->open(model, opt, err)) return nullptr;
  return b;
}

}  // namespace asfyolo
