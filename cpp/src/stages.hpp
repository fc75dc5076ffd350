// The pipeline's stages in C++ (the Python reference: asfyolo_rt/runtime/tiles.py, stages.py, infer/nms.py and
// kernels/mask_assembly/reference.py). Float32 arithmetic in the reference's order, so that the same network
// outputs give the same cells; coordinates: a tile at (x0, y0) of the scaled image maps original pixel x to
// network pixel x * scale - x0.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace asfyolo {

constexpr float kMaxWH = 7680.0f;   // per-class box offset of class-aware NMS (asfyolo_rt.infer.nms.MAX_WH)
constexpr int kMaxNms = 30000;      // candidates into NMS per tile
constexpr float kCutMargin = 1.0f;  // network px: a box this close to an inner tile edge is cut by it

struct Tile {
  int x0 = 0, y0 = 0, h = 0, w = 0;
  double core[4] = {0, 0, 0, 0};  // [cx0, cy0, cx1, cy1) in scaled-image px
};

struct Plan {
  int h0 = 0, w0 = 0;  // original
  int hs = 0, ws = 0;  // at model scale
  double scale = 1.0;  // network px per original px
  std::vector<Tile> tiles;
};

constexpr int kMinFitTile = 320;          // the sides fit_side chooses between (tiles.MIN_FIT_TILE, MAX_FIT_TILE)
constexpr int kMaxFitTile = 1024;
constexpr int kTileCostPx = 32 * 1024;    // network px one more tile costs beyond its pixels (tiles.TILE_COST_PX)

struct FitSide {
  int side = 0;   // tile side (a multiple of 32)
  int tiles = 0;  // tiles along the axis
};

// fit_side of asfyolo_rt.runtime.tiles: along an axis of `length` network px, the multiple of 32 in [lo, hi]
// whose tiles (neighbours sharing >= overlap px) run the fewest pixels (n * side + n * kTileCostPx / hi);
// one tile of ceil32(length) where the axis fits in hi.
FitSide fit_side(int length, int overlap, int lo = kMinFitTile, int hi = kMaxFitTile);
// fit_tile: the tile of a dynamic-shape backend for a scaled image of hs x ws when the caller gave no tile size.
void fit_tile(int hs, int ws, int overlap, int* tile_h, int* tile_w);

// plan_image of asfyolo_rt.runtime.tiles (no window): false + *err when the overlap is not smaller than a tile.
// tile_h or tile_w <= 0: the image's own tile (fit_tile of the scaled image; a dynamic backend).
bool plan_image(int h0, int w0, double model_scale, int tile_h, int tile_w, int overlap, bool is_static, Plan* out,
                std::string* err);

// Stage 2c (stages.is_empty_tile): in the brightest and in the darkest channel of one pixel of each 4 x 4
// inside the image, the pixel noise sigma (median absolute difference of neighbouring looked-at pixels) is
// <= 8 grey levels and fewer than 48 network px differ from the median by more than max(16, 5 sigma).
bool is_empty_tile(const uint8_t* rgb, int width, int height, const Tile& t);

// A detection of one tile, in that tile's network px.
struct Det {
  float box[4];
  float score;
  int cls;
  std::vector<float> coeffs;
};

// non_max_suppression of one image's raw predictions (anchors, 5 + nc + nm): objectness and class score
// > conf, top kMaxNms by confidence, class-aware greedy NMS (IoU > iou suppresses), at most max_det.
std::vector<Det> decode_nms(const float* pred, int64_t anchors, int nc, int nm, float conf, float iou, int max_det);

// The rows of an end-to-end graph (NMS inside) for one image: the first num_dets, score > conf when
// conf > graph_conf.
std::vector<Det> e2e_rows(int num, const float* boxes, const float* scores, const float* classes, const float* coeffs,
                          int k, int nm, float conf, float graph_conf);

// Greedy NMS as asfyolo_rt.infer.nms.nms (OpenCV's NMSBoxes on the CPU): kept indices by score, ties by index.
std::vector<int> nms(const std::vector<std::array<float, 4>>& boxes, const std::vector<float>& scores, float iou);

bool owned(const Det& d, const Tile& t);                         // box centre in the tile's core
bool cut_by_tile(const Det& d, const Tile& t, const Plan& plan);  // touches an inner edge of the tile
Tile rescue_tile(const float box_scaled[4], const Tile& t, const Plan& plan);
// Index of the rescue tile's detection covering >= 60 % of the cut box (scaled px) and not cut itself, or -1.
int covering(const std::vector<Det>& dets, const Tile& rt, const float cut_box[4], const Plan& plan);

// A cell candidate in original pixels with its box-local full-resolution mask.
struct Cand {
  float box[4];
  float score;
  int cls;
  int win[4];  // x0, y0, w, h in original px
  std::vector<uint8_t> mask;  // w * h, row-major, {0, 1}
};

// Stage 5b: a tile's detection in original pixels with its mask (protos: nm x hp x wp of that tile).
Cand assemble(const Det& d, const float* protos, int nm, int hp, int wp, const Tile& t, const Plan& plan,
              float thr_logit);
float logit_threshold(double threshold);

// Stage 6: one class-aware NMS over all candidates (global when grid > 1), sorted by score.
std::vector<Cand> merge(std::vector<Cand> cands, int h0, int w0, float iou, bool global_nms);

// Stage 7: paint (highest score wins, ties: lower index), drop cells with less than min_visible of their mask
// visible and repaint. `labels` gets h0 * w0 values; `cands` keeps the cells shown.
void paint(std::vector<Cand>* cands, int h0, int w0, double min_visible, std::vector<uint32_t>* labels);

}  // namespace asfyolo
