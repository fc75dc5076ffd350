// A whole frame through the stages (asfyolo_rt.runtime.stages.Runner + pipeline.FramePipeline): plan tiles at
// the model scale, read + pre-process + infer + decode + own + assemble on worker threads (one per inference
// request in flight), rescue cut cells, one global NMS, paint with min-visible, measure the cells.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend.hpp"
#include "image.hpp"
#include "model_info.hpp"
#include "stages.hpp"

namespace asfyolo {

constexpr int kDefaultTile = 640;  // the tile of a dynamic backend that takes one fixed shape (tiles.DEFAULT_TILE)

struct Settings {
  double conf = kDefaultConf, iou = 0.45, min_visible = 0.5, mask_threshold = 0.5;
  int max_det = 1000;
  int overlap = -1;        // network px; < 0: overlap_for(the model's object size)
  int tile = 0;            // tile side of dynamic models; 0: each image's own (fit_tile), or kDefaultTile
  int batch = 1;           // tiles per call of dynamic-batch models
  int threads = 0;         // 0: hardware concurrency
  bool skip_empty = true;  // tiles with no content (is_empty_tile) are not run
  double model_scale = 1.0;
  double object_px = -1;   // ModelInfo.overlap_object_px
  double train_pixel_size = -1;
};

// The settings of a run: the model's recorded values, then the caller's overrides (checked here).
bool make_settings(const ModelInfo& info, double conf, double iou, int max_det, double min_visible,
                   double mask_threshold, int overlap, int tile, int batch, int threads, Settings* out, std::string* err);

struct CellRow {  // one row of predict's cells.csv (measured on the label map)
  float box[4];
  float score;
  int cls;
  int win[4];
  int64_t area = 0;
  double cx = 0, cy = 0, diameter = 0;
};

struct FrameOut {
  int width = 0, height = 0, tiles = 0;
  std::vector<uint32_t> labels;
  std::vector<CellRow> cells;
  double read_ms = 0, preprocess_ms = 0, inference_ms = 0, postprocess_ms = 0, total_ms = 0;
};

class Pipeline {
 public:
  Pipeline(std::shared_ptr<Backend> backend, ModelInfo info, Settings s);
  enum Status { kOk = 0, kBadInput = 1, kBackendFailed = 2 };
  // Segments an RGB frame; pixel_size (µm/px, <= 0 unknown) rescales to the training pixel size.
  Status run(const Rgb8& rgb, double pixel_size, FrameOut* out, std::string* err);
  const Settings& settings() const { return s_; }
  const ModelInfo& info() const { return info_; }
  std::shared_ptr<Backend> backend() const { return backend_; }

 private:
  struct Times { double pre = 0, inf = 0, post = 0; };
  using TileFn = std::function<void(size_t index, std::vector<Det>* dets, const float* protos, int hp, int wp)>;
  // Runs `tiles` of `scaled` through the backend, `batch` per call, on up to backend->parallel() threads; calls
  // fn on the worker thread for each tile (fn must only touch that tile's slot).
  bool for_tiles(const Rgb8& scaled, const std::vector<Tile>& tiles, const TileFn& fn, Times* t, std::string* err);
  int batch_ = 1;
  std::shared_ptr<Backend> backend_;
  ModelInfo info_;
  Settings s_;
  int nm_ = 32, nc_ = 1;
};

}  // namespace asfyolo
