// The engine sidecar record and the compatibility check; see engine_record.hpp.
#include "engine_record.hpp"

#include <cctype>
#include <fstream>
#include <sstream>

#include "../json.hpp"

namespace asfyolo {
namespace trt {

namespace {

const char* const kFormats[] = {"asfyolo-rt-engine/1", "asfyolo-rt-engine/2", "asfyolo-rt-engine/3"};

// Member `key` of an object as a string / bool; `fallback` when absent or of another type.
std::string get_string(const Json& doc, const char* key, const std::string& fallback = "") {
  const Json* v = doc.get(key);
  return v != nullptr && v->kind == Json::String ? v->str : fallback;
}

bool get_bool(const Json& doc, const char* key, bool fallback) {
  const Json* v = doc.get(key);
  return v != nullptr && v->kind == Json::Bool ? v->b : fallback;
}

std::string version_text(int major, int minor, int patch) {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// "sm86" / "sm_86" / "SM86" -> "sm86".
std::string normalise_arch(const std::string& arch) {
  std::string out;
  for (char c : arch) {
    if (c != '_') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

bool read_file(const std::string& path, std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *text = ss.str();
  return !in.bad();
}

}  // namespace

std::string sidecar_path_for(const std::string& engine_path) { return engine_path + ".json"; }

std::string file_name(const std::string& path) {
  size_t slash = path.find_last_of("/\\");
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool parse_version(const std::string& text, int* major, int* minor, int* patch) {
  int parts[3] = {0, 0, 0};
  size_t pos = 0;
  for (int i = 0; i < 3 && pos < text.size(); ++i) {
    size_t start = pos;
    long value = 0;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])) && pos - start < 6) {
      value = value * 10 + (text[pos] - '0');
      ++pos;
    }
    if (pos == start) return false;
    parts[i] = static_cast<int>(value);
    if (pos < text.size()) {
      if (text[pos] != '.') return false;
      ++pos;
    }
  }
  if (text.empty()) return false;
  *major = parts[0];
  *minor = parts[1];
  *patch = parts[2];
  return true;
}

void decode_lib_version(int32_t version, bool wide, int* major, int* minor, int* patch) {
  int32_t unit = wide ? 10000 : 1000;
  *major = version / unit;
  *minor = (version % unit) / 100;
  *patch = version % 100;
}

bool parse_cuda_device(const std::string& device, int* index) {
  std::string d;
  for (char c : device) d.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (d.empty() || d == "cuda" || d == "gpu") {
    *index = 0;
    return true;
  }
  std::string digits = d;
  if (d.rfind("cuda:", 0) == 0 || d.rfind("gpu:", 0) == 0 || d.rfind("gpu.", 0) == 0) {
    digits = d.substr(d.find_first_of(":.") + 1);
  }
  if (digits.empty() || digits.size() > 3) return false;
  int value = 0;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    value = value * 10 + (c - '0');
  }
  *index = value;
  return true;
}

bool parse_engine_record(const std::string& text, const std::string& sidecar_path, EngineRecord* out,
                         std::string* err) {
  Json doc;
  std::string why;
  if (!parse_json(text, &doc, &why)) {
    *err = sidecar_path + ": not valid JSON (" + why + "); rebuild the engine with `asfyolo-rt build`";
    return false;
  }
  if (doc.kind != Json::Object) {
    *err = sidecar_path + ": not a JSON object; rebuild the engine with `asfyolo-rt build`";
    return false;
  }
  EngineRecord rec;
  rec.sidecar = sidecar_path;
  rec.format = get_string(doc, "format");
  bool known = false;
  for (const char* f : kFormats) known = known || rec.format == f;
  if (!known) {
    *err = sidecar_path + ": format '" + rec.format + "', expected asfyolo-rt-engine/1, /2 or /3 (written by a "
           "newer asfyolo-rt? update this runtime)";
    return false;
  }
  for (const char* key : {"engine", "precision", "tensorrt_version", "compute_capability"}) {
    const Json* v = doc.get(key);
    if (v == nullptr || v->kind != Json::String) {
      *err = sidecar_path + ": missing string key '" + key + "'; rebuild the engine with `asfyolo-rt build`";
      return false;
    }
  }
  rec.engine = get_string(doc, "engine");
  rec.precision = get_string(doc, "precision");
  rec.tensorrt_version = get_string(doc, "tensorrt_version");
  rec.compute_capability = get_string(doc, "compute_capability");
  rec.device = get_string(doc, "device");
  rec.runtime = get_string(doc, "runtime", "TensorRT");
  rec.end2end = get_bool(doc, "end2end", false);
  const Json* dla = doc.get("dla_core");
  if (dla != nullptr && dla->kind == Json::Number) {
    if (dla->num < 0 || dla->num > 15 || dla->num != static_cast<int>(dla->num)) {
      *err = sidecar_path + ": dla_core " + std::to_string(dla->num) + " is not a DLA core index";
      return false;
    }
    rec.dla_core = static_cast<int>(dla->num);
  }
  if (rec.runtime != "TensorRT" && rec.runtime != "TensorRT-RTX") {
    *err = sidecar_path + ": runtime '" + rec.runtime + "', expected 'TensorRT' or 'TensorRT-RTX'";
    return false;
  }
  if (const Json* t = doc.get("targets")) {
    for (const Json& item : t->arr) {
      if (item.kind == Json::String) rec.targets.push_back(normalise_arch(item.str));
    }
  }
  *out = rec;
  return true;
}

bool load_engine_record(const std::string& engine_path, EngineRecord* out, std::string* err) {
  std::string path = sidecar_path_for(engine_path);
  std::string text;
  if (!read_file(path, &text)) {
    *err = path + " cannot be read: an engine needs the sidecar `asfyolo-rt build` writes beside it "
           "(rebuild with `asfyolo-rt build BUNDLE`)";
    return false;
  }
  return parse_engine_record(text, path, out, err);
}

std::string check_compatibility(const EngineRecord& rec, const RuntimeFacts& facts) {
  std::string name = rec.engine.empty() ? file_name(rec.sidecar) : rec.engine;
  std::string here = facts.runtime + " " + version_text(facts.major, facts.minor, facts.patch);
  if (rec.runtime != facts.runtime) {
    return name + " was built with " + rec.runtime + ", but this asfyolo library runs " + here + " (their " +
           "engines are not interchangeable): rebuild it with `asfyolo-rt build BUNDLE --runtime " +
           (facts.runtime == "TensorRT-RTX" ? "rtx" : "trt") + "`, or use an asfyolo library built with " +
           rec.runtime;
  }
  int major = 0, minor = 0, patch = 0;
  if (!parse_version(rec.tensorrt_version, &major, &minor, &patch)) {
    return rec.sidecar + ": tensorrt_version '" + rec.tensorrt_version + "' is not a version; rebuild the "
           "engine with `asfyolo-rt build`";
  }
  if (major != facts.major || minor != facts.minor || patch != facts.patch) {
    return name + " was built with " + rec.runtime + " " + rec.tensorrt_version + ", this is " + here +
           ": a plan runs only on the version that built it; rebuild it here with `asfyolo-rt build`";
  }
  std::string gpu = facts.device_name.empty() ? std::string("this GPU") : "this GPU (" + facts.device_name + ")";
  std::string cc = std::to_string(facts.cc_major) + "." + std::to_string(facts.cc_minor);
  std::string arch = "sm" + std::to_string(facts.cc_major) + std::to_string(facts.cc_minor);
  if (rec.runtime == "TensorRT-RTX") {
    if (!rec.targets.empty()) {
      for (const std::string& t : rec.targets) {
        if (t == arch) return "";
      }
      return name + " was built for " + join(rec.targets) + "; " + gpu + " is " + arch + ": rebuild it with "
             "`asfyolo-rt build BUNDLE --runtime rtx --arch " + arch + "`";
    }
    if (facts.cc_major < 8) {
      return name + " was built for TensorRT-RTX's default targets (compute capability 8.0 and newer), " + gpu +
             " is " + cc + ": rebuild it with `asfyolo-rt build BUNDLE --runtime rtx --arch " + arch + "`";
    }
    return "";
  }
  if (rec.compute_capability != cc) {
    std::string built = rec.compute_capability.empty() ? std::string("an unrecorded GPU")
                                                       : "compute capability " + rec.compute_capability;
    if (!rec.device.empty()) built += " (" + rec.device + ")";
    return name + " was built for " + built + ", " + gpu + " is " + cc + ": TensorRT engines are tied to the "
           "GPU architecture; rebuild it on this device with `asfyolo-rt build`";
  }
  return "";
}

}  // namespace trt
}  // namespace asfyolo
