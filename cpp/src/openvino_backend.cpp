// The OpenVINO backend (backend.hpp): an exported ONNX file or an IR on the CPU. FP32 by an explicit
// INFERENCE_PRECISION_HINT f32 (OpenVINO would otherwise pick bf16 on BF16 CPUs by itself), bf16 only where
// asked and the CPU has native BF16 (avx512_bf16 / amx_bf16), an NNCF INT8 IR as it is. Throughput mode:
// several infer requests (one per CPU stream) run at once, each from its own pipeline worker thread.
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <openvino/openvino.hpp>
#include <set>
#include <sstream>

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

class OpenVinoBackend : public Backend {
 public:
  const char* name() const override { return "openvino"; }
  int input_height() const override { return h_; }
  int input_width() const override { return w_; }
  int static_batch() const override { return b_; }
  bool end_to_end() const override { return e2e_; }
  int parallel() const override { return static_cast<int>(requests_.size()); }

  bool open(const std::string& model_path, const BackendOptions& opt, std::string* err) {
    try {
      ov::Core core;
      std::shared_ptr<ov::Model> model = core.read_model(model_path);
      if (model->inputs().size() != 1) {
        *err = model_path + ": expected one input, found " + std::to_string(model->inputs().size());
        return false;
      }
      std::set<std::string> outs;
      for (const auto& o : model->outputs())
        for (const auto& n : o.get_names()) outs.insert(n);
      e2e_ = outs.count("num_dets") > 0;
      if (!outs.count("protos") || (!e2e_ && !outs.count("pred"))) {
        *err = model_path + ": expected outputs 'pred' and 'protos' (or an end-to-end graph's rows); not an "
                            "asfyolo-rt export";
        return false;
      }
      const ov::PartialShape ps = model->input().get_partial_shape();
      if (ps.rank().is_dynamic() || ps.rank().get_length() != 4) {
        *err = model_path + ": expected an NCHW input";
        return false;
      }
      auto dim = [&](int i) { return ps[i].is_static() ? static_cast<int>(ps[i].get_length()) : 0; };
      b_ = dim(0);
      h_ = dim(2);
      w_ = dim(3);
      bool quantized = false;
      for (const auto& op : model->get_ops())
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
      ov::AnyMap config{{ov::hint::inference_precision.name(), precision == "bf16" ? ov::element::bf16 : ov::element::f32},
                        {ov::hint::performance_mode.name(), ov::hint::PerformanceMode::THROUGHPUT}};
      // no pinning: on a machine shared with other processes a stream pinned to a busy core waits for it
      config[ov::hint::enable_cpu_pinning.name()] = false;
      if (opt.threads > 0) config[ov::inference_num_threads.name()] = opt.threads;
      if (opt.requests > 0) config[ov::num_streams.name()] = ov::streams::Num(opt.requests);
      compiled_ = core.compile_model(model, opt.device.empty() ? "CPU" : opt.device, config);
      int n = opt.requests > 0 ? opt.requests
                               : static_cast<int>(compiled_.get_property(ov::optimal_number_of_infer_requests));
      n = std::max(1, std::min(n, 64));
      for (int k = 0; k < n; ++k) requests_.push_back(compiled_.create_infer_request());
      free_.assign(n, true);
      for (const auto& o : compiled_.outputs()) out_names_.push_back(o.get_any_name());
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
    size_t k = acquire();
    bool ok = true;
    try {
      ov::InferRequest& r = requests_[k];
      ov::Tensor in(ov::element::f32, ov::Shape{size_t(n), 3, size_t(h), size_t(w)}, const_cast<float*>(input));
      r.set_input_tensor(in);
      r.start_async();
      r.wait();
      outputs->clear();
      for (size_t i = 0; i < out_names_.size(); ++i) {
        ov::Tensor t = r.get_output_tensor(i);
        Output o;
        o.name = out_names_[i];
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
    release(k);
    return ok;
  }

 private:
  size_t acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    size_t k = 0;
    cv_.wait(lock, [&] {
      for (k = 0; k < free_.size(); ++k)
        if (free_[k]) return true;
      return false;
    });
    free_[k] = false;
    return k;
  }
  void release(size_t k) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      free_[k] = true;
    }
    cv_.notify_one();
  }

  ov::CompiledModel compiled_;
  std::vector<ov::InferRequest> requests_;
  std::vector<bool> free_;
  std::vector<std::string> out_names_;
  std::mutex mu_;
  std::condition_variable cv_;
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
