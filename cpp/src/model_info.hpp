// ModelInfo: the contract of asfyolo_rt/runtime/model_info.schema.json, read from a bundle's model.json, an
// exported ONNX file's metadata (key model_info), an OpenVINO IR's rt_info (section asfyolo_rt) or a TensorRT
// engine's sidecar (<engine>.json, key model_info). An unknown major schema_version is refused.
#pragma once

#include <map>
#include <string>

namespace asfyolo {

constexpr const char* kSchema = "asfyolo-rt/model-info";
constexpr int kSchemaMajor = 1;
constexpr double kDefaultConf = 0.25;
constexpr int kDefaultOverlap = 128;
constexpr int kPadValue = 114;

struct ModelInfo {
  std::map<int, std::string> names{{0, "cell"}};
  std::string schema_version = "1.1";
  std::string precision = "fp32";
  std::string train_scale = "fit";
  bool end2end = false;
  double model_scale = 1.0;
  double max_object_px = -1;    // < 0: not recorded
  double object_px_p99 = -1;    // < 0: not recorded
  double pixel_size_um = -1;    // < 0: not recorded
  double conf = -1;             // < 0: not tuned (kDefaultConf)
  double iou = 0.45;
  int max_det = 1000;
  double mask_threshold = 0.5;
  double min_visible = 0.5;
  int train_img_size = 0;
  std::map<std::string, double> e2e_thresholds;  // conf_threshold, iou_threshold, max_det baked into the graph
  std::string json;             // the document as read (what backends get as info_json)

  double default_conf() const { return conf >= 0 ? conf : kDefaultConf; }
  // ModelInfo.overlap_object_px: the 99th percentile where recorded, else the largest object (< 0: none).
  double overlap_object_px() const { return object_px_p99 >= 0 ? object_px_p99 : max_object_px; }
};

// overlap_for of asfyolo_rt.runtime.info: a multiple of 16 larger than the object (128 when unknown).
int overlap_for(double object_px);

// Parses and validates a ModelInfo JSON document. `source` names the file in the message.
bool parse_model_info(const std::string& text, const std::string& source, ModelInfo* out, std::string* err);

// Where a path's model and model info are. A folder: model.json + (model_file, else model.onnx); .onnx: its
// metadata; .xml: its rt_info; .engine/.plan: its sidecar. *model is the file to run, *info_json the text,
// *info_source the file it came from (for messages).
bool locate_model(const std::string& path, const std::string& model_file, std::string* model,
                  std::string* info_json, std::string* info_source, std::string* err);

bool read_file(const std::string& path, std::string* out, std::string* err);
bool is_dir(const std::string& path);
bool is_file(const std::string& path);
std::string lower_suffix(const std::string& path);  // ".onnx", ".xml", ... ("" when none)

}  // namespace asfyolo
