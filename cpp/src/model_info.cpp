// ModelInfo reader (model_info.hpp): JSON validation as asfyolo_rt.runtime.info.ModelInfo.from_dict/check,
// and the artifact readers (bundle folder, ONNX metadata_props, IR rt_info, engine sidecar).
#include "model_info.hpp"

#include <sys/stat.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "json.hpp"

namespace asfyolo {

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string lower_suffix(const std::string& path) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string s = path.substr(dot);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool read_file(const std::string& path, std::string* out, std::string* err) {
  if (!is_file(path)) {
    *err = path + ": no such file";
    return false;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *err = path + ": cannot open for reading";
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

int overlap_for(double object_px) {
  if (!(object_px >= 0)) return kDefaultOverlap;
  return static_cast<int>(16 * std::ceil((object_px + 1) / 16));
}

namespace {

// A number field: absent/null leaves *out; another type is an error.
bool num(const Json& doc, const char* key, double* out, std::string* bad) {
  const Json* v = doc.get(key);
  if (!v || v->is_null()) return true;
  if (v->kind != Json::Number || !std::isfinite(v->num)) {
    *bad += std::string(bad->empty() ? "" : ", ") + key + " is not a number";
    return false;
  }
  *out = v->num;
  return true;
}

bool str(const Json& doc, const char* key, std::string* out, std::string* bad) {
  const Json* v = doc.get(key);
  if (!v || v->is_null()) return true;
  if (v->kind != Json::String) {
    *bad += std::string(bad->empty() ? "" : ", ") + key + " is not a string";
    return false;
  }
  *out = v->str;
  return true;
}

void check(const ModelInfo& m, std::string* bad) {
  auto add = [&](const std::string& s) { *bad += (bad->empty() ? "" : ", ") + s; };
  const char* precisions[] = {"fp32", "fp16", "bf16", "int8", "int8-cpu"};
  bool known = false;
  for (const char* p : precisions) known = known || m.precision == p;
  if (!known) add("precision '" + m.precision + "'");
  if (m.train_scale != "native" && m.train_scale != "fit") add("train_scale '" + m.train_scale + "'");
  if (!(m.model_scale >= 0.01 && m.model_scale <= 100)) add("model_scale " + std::to_string(m.model_scale));
  if (m.conf >= 1.0) add("conf " + std::to_string(m.conf));
  if (!(m.iou > 0 && m.iou <= 1)) add("iou " + std::to_string(m.iou));
  if (m.max_det < 1) add("max_det " + std::to_string(m.max_det));
  if (!(m.min_visible >= 0 && m.min_visible <= 1)) add("min_visible " + std::to_string(m.min_visible));
  if (!(m.mask_threshold > 0 && m.mask_threshold < 1)) add("mask_threshold " + std::to_string(m.mask_threshold));
  if (m.names.empty()) add("no class names");
}

}  // namespace

bool parse_model_info(const std::string& text, const std::string& source, ModelInfo* out, std::string* err) {
  Json doc;
  std::string jerr;
  if (!parse_json(text, &doc, &jerr)) {
    *err = source + ": model info is not valid JSON (" + jerr + ")";
    return false;
  }
  if (doc.kind != Json::Object) {
    *err = source + ": model info is not a JSON object";
    return false;
  }
  const Json* schema = doc.get("schema");
  if (schema && !(schema->kind == Json::String && schema->str == kSchema)) {
    *err = source + ": schema " + (schema->kind == Json::String ? "'" + schema->str + "'" : "(not a string)") +
           ", expected '" + kSchema + "'";
    return false;
  }
  ModelInfo m;
  const Json* ver = doc.get("schema_version");
  std::string version = ver && ver->kind == Json::String ? ver->str : "";
  std::string major = version.substr(0, version.find('.'));
  if (major != std::to_string(kSchemaMajor)) {
    *err = source + ": model info schema version " + (version.empty() ? "(none)" : version) +
           " is not readable by this asfyolo runtime (reads " + std::to_string(kSchemaMajor) +
           ".x); upgrade the runtime or re-export the model with this version";
    return false;
  }
  m.schema_version = version;
  std::string bad;
  double v = 0;
  str(doc, "precision", &m.precision, &bad);
  str(doc, "train_scale", &m.train_scale, &bad);
  num(doc, "model_scale", &m.model_scale, &bad);
  num(doc, "max_object_px", &m.max_object_px, &bad);
  num(doc, "object_px_p99", &m.object_px_p99, &bad);
  num(doc, "pixel_size_um", &m.pixel_size_um, &bad);
  num(doc, "conf", &m.conf, &bad);
  num(doc, "iou", &m.iou, &bad);
  num(doc, "mask_threshold", &m.mask_threshold, &bad);
  num(doc, "min_visible", &m.min_visible, &bad);
  v = m.max_det;
  if (num(doc, "max_det", &v, &bad)) m.max_det = v > 1e9 ? 1000000000 : static_cast<int>(v);
  v = 0;
  if (num(doc, "train_img_size", &v, &bad)) m.train_img_size = static_cast<int>(v);
  if (const Json* e = doc.get("end2end")) m.end2end = e->kind == Json::Bool && e->b;
  if (const Json* names = doc.get("names")) {
    if (names->kind != Json::Object) {
      bad += std::string(bad.empty() ? "" : ", ") + "names is not an object";
    } else {
      m.names.clear();
      for (const auto& kv : names->obj) {
        char* end = nullptr;
        long k = std::strtol(kv.first.c_str(), &end, 10);
        if (kv.first.empty() || *end || k < 0 || k > 100000 || kv.second.kind != Json::String) {
          bad += std::string(bad.empty() ? "" : ", ") + "names key '" + kv.first + "'";
          break;
        }
        m.names[static_cast<int>(k)] = kv.second.str;
      }
    }
  }
  if (const Json* e2e = doc.get("e2e_thresholds")) {
    for (const auto& kv : e2e->obj)
      if (kv.second.kind == Json::Number) m.e2e_thresholds[kv.first] = kv.second.num;
  }
  check(m, &bad);
  if (!bad.empty()) {
    *err = source + ": invalid model info: " + bad;
    return false;
  }
  m.json = text;
  *out = m;
  return true;
}

namespace {

// ---- ONNX: ModelProto.metadata_props (field 14: StringStringEntryProto key=1, value=2), protobuf wire format
bool varint(const std::string& b, size_t* i, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*i >= b.size()) return false;
    uint8_t c = static_cast<uint8_t>(b[(*i)++]);
    *v |= static_cast<uint64_t>(c & 0x7F) << shift;
    if (!(c & 0x80)) return true;
  }
  return false;
}

// Walks the fields of one message in b[start, end); calls f(field, wire, payload_start, payload_len).
template <typename F>
bool walk(const std::string& b, size_t start, size_t end, F f) {
  size_t i = start;
  while (i < end) {
    uint64_t key = 0, len = 0;
    if (!varint(b, &i, &key)) return false;
    uint32_t field = static_cast<uint32_t>(key >> 3), wire = key & 7;
    if (wire == 0) {
      if (!varint(b, &i, &len)) return false;
    } else if (wire == 1) {
      i += 8;
    } else if (wire == 5) {
      i += 4;
    } else if (wire == 2) {
      if (!varint(b, &i, &len) || len > end - i) return false;
      f(field, i, static_cast<size_t>(len));
      i += len;
    } else {
      return false;
    }
    if (i > end) return false;
  }
  return true;
}

bool onnx_model_info(const std::string& path, std::string* info, std::string* err) {
  std::string b;
  if (!read_file(path, &b, err)) return false;
  bool found = false;
  bool ok = walk(b, 0, b.size(), [&](uint32_t field, size_t at, size_t len) {
    if (field != 14) return;
    std::string key, value;
    walk(b, at, at + len, [&](uint32_t f2, size_t a2, size_t l2) {
      if (f2 == 1) key = b.substr(a2, l2);
      if (f2 == 2) value = b.substr(a2, l2);
    });
    if (key == "model_info") {
      *info = value;
      found = true;
    }
  });
  if (!ok && !found) {
    *err = path + ": not a readable ONNX file (protobuf structure broken); export one with `asfyolo-rt export`";
    return false;
  }
  if (!found) {
    *err = path + ": no model_info metadata (exported before the ModelInfo schema, or not an asfyolo-rt model); "
                  "re-export it with `asfyolo-rt export`";
    return false;
  }
  return true;
}

std::string xml_unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    size_t semi = s.find(';', i);
    if (semi == std::string::npos) { out.push_back('&'); continue; }
    std::string ent = s.substr(i + 1, semi - i - 1);
    if (ent == "quot") out.push_back('"');
    else if (ent == "amp") out.push_back('&');
    else if (ent == "lt") out.push_back('<');
    else if (ent == "gt") out.push_back('>');
    else if (ent == "apos") out.push_back('\'');
    else if (!ent.empty() && ent[0] == '#') {
      long cp = ent.size() > 1 && (ent[1] == 'x' || ent[1] == 'X') ? std::strtol(ent.c_str() + 2, nullptr, 16)
                                                                    : std::strtol(ent.c_str() + 1, nullptr, 10);
      if (cp > 0 && cp < 0x80) out.push_back(static_cast<char>(cp));
    } else {
      out += "&" + ent + ";";
    }
    i = semi;
  }
  return out;
}

// ---- OpenVINO IR: <rt_info> ... <asfyolo_rt> ... <model_info value="..."/> (what ir_metadata reads)
bool ir_model_info(const std::string& path, std::string* info, std::string* err) {
  std::string x;
  if (!read_file(path, &x, err)) return false;
  size_t rt = x.rfind("<rt_info>");
  size_t sec = rt == std::string::npos ? rt : x.find("<asfyolo_rt>", rt);
  size_t sec_end = sec == std::string::npos ? sec : x.find("</asfyolo_rt>", sec);
  size_t key = sec_end == std::string::npos ? sec_end : x.find("<model_info value=\"", sec);
  if (key == std::string::npos || key > sec_end) {
    *err = path + ": no model_info in the IR's rt_info (not an asfyolo-rt export); export it with "
                  "`asfyolo-rt export --int8` or pass the bundle's model.onnx";
    return false;
  }
  key += 19;
  size_t close = x.find('"', key);
  if (close == std::string::npos) {
    *err = path + ": malformed rt_info model_info attribute";
    return false;
  }
  *info = xml_unescape(x.substr(key, close - key));
  return true;
}

// ---- TensorRT engine: <engine>.json sidecar, key model_info (an object)
bool sidecar_model_info(const std::string& path, std::string* info, std::string* err) {
  std::string side = path + ".json", text;
  if (!is_file(side)) {
    *err = path + ": no sidecar " + side + " (engines from `asfyolo-rt build` have one beside them)";
    return false;
  }
  if (!read_file(side, &text, err)) return false;
  Json doc;
  std::string jerr;
  if (!parse_json(text, &doc, &jerr)) {
    *err = side + ": sidecar is not valid JSON (" + jerr + ")";
    return false;
  }
  const Json* mi = doc.get("model_info");
  if (!mi || mi->kind != Json::Object) {
    *err = side + ": no model_info in the sidecar (built before the ModelInfo schema); rebuild the engine";
    return false;
  }
  // Re-serialise the object: the model info reader takes text.
  std::function<std::string(const Json&)> dump = [&](const Json& j) -> std::string {
    char buf[64];
    switch (j.kind) {
      case Json::Null: return "null";
      case Json::Bool: return j.b ? "true" : "false";
      case Json::Number: std::snprintf(buf, sizeof buf, "%.17g", j.num); return buf;
      case Json::String: return json_quote(j.str);
      case Json::Array: {
        std::string s = "[";
        for (size_t k = 0; k < j.arr.size(); ++k) s += (k ? "," : "") + dump(j.arr[k]);
        return s + "]";
      }
      case Json::Object: {
        std::string s = "{";
        bool first = true;
        for (const auto& kv : j.obj) {
          s += (first ? "" : ",") + json_quote(kv.first) + ":" + dump(kv.second);
          first = false;
        }
        return s + "}";
      }
    }
    return "null";
  };
  *info = dump(*mi);
  return true;
}

}  // namespace

bool locate_model(const std::string& path, const std::string& model_file, std::string* model,
                  std::string* info_json, std::string* info_source, std::string* err) {
  if (path.empty()) {
    *err = "path: empty; give a bundle folder or a model file";
    return false;
  }
  if (is_dir(path)) {
    std::string dir = path.back() == '/' ? path : path + "/";
    std::string mj = dir + "model.json";
    if (!is_file(mj)) {
      *err = path + ": a folder without model.json; give a bundle written by `asfyolo-rt export`, or a model file";
      return false;
    }
    std::string name = model_file.empty() ? "model.onnx" : model_file;
    if (name.find('/') != std::string::npos) {
      *err = "model_file '" + name + "': expected a file name inside the bundle folder";
      return false;
    }
    *model = dir + name;
    if (!is_file(*model)) {
      *err = path + ": the bundle has no " + name + "; pass options.model_file naming one of its model files";
      return false;
    }
    *info_source = mj;
    return read_file(mj, info_json, err);
  }
  if (!is_file(path)) {
    *err = path + ": no such file or folder";
    return false;
  }
  *model = path;
  *info_source = path;
  std::string suf = lower_suffix(path);
  if (suf == ".engine" || suf == ".plan") *info_source = path + ".json";
  if (suf == ".onnx") return onnx_model_info(path, info_json, err);
  if (suf == ".xml") return ir_model_info(path, info_json, err);
  if (suf == ".engine" || suf == ".plan") return sidecar_model_info(path, info_json, err);
  if (suf == ".json") {
    *err = path + ": a model info file alone cannot run; give its bundle folder or the model file";
    return false;
  }
  *err = path + ": don't know how to run '" + suf + "' files; expected a bundle folder, .onnx, .xml (OpenVINO) or "
         ".engine/.plan (TensorRT)";
  return false;
}

}  // namespace asfyolo
