// The pipeline's stages (stages.hpp).
#include "stages.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <string>

namespace asfyolo {

// ------------------------------------------------------------------------------------------------ tiles
namespace {

int ceil32(int n) { return std::max(32, 32 * static_cast<int>(std::ceil(n / 32.0))); }

bool tile_starts(int length, int tile, int overlap, std::vector<int>* out, std::string* err) {
  out->clear();
  if (length <= tile) {
    out->push_back(0);
    return true;
  }
  int step = tile - overlap;
  if (step <= 0) {
    *err = "tile overlap " + std::to_string(overlap) + " px is not smaller than the tile (" + std::to_string(tile) +
           " px); use a smaller tile_overlap or a larger tile";
    return false;
  }
  int n = std::max(2, static_cast<int>(std::ceil(static_cast<double>(length - overlap) / step)));
  for (int k = 0; k < n; ++k)
    out->push_back(static_cast<int>(std::nearbyint(static_cast<double>(k) * (length - tile) / (n - 1))));
  return true;
}

std::vector<std::array<double, 2>> cores(const std::vector<int>& s, int tile, int length) {
  std::vector<std::array<double, 2>> out;
  for (size_t k = 0; k < s.size(); ++k) {
    double lo = k == 0 ? 0.0 : (s[k] + s[k - 1] + tile) / 2.0;
    double hi = k + 1 == s.size() ? static_cast<double>(length) : (s[k + 1] + s[k] + tile) / 2.0;
    out.push_back({lo, hi});
  }
  return out;
}

}  // namespace

FitSide fit_side(int length, int overlap, int lo, int hi) {
  if (length <= hi) return {ceil32(length), 1};
  const int floor_side = ceil32(std::max(lo, 2 * overlap + 32));
  if (floor_side > hi) {  // an overlap near half the largest tile: the largest tile (plan_image caps the overlap)
    const int step = std::max(1, hi - overlap);
    return {hi, std::max(2, static_cast<int>((static_cast<int64_t>(length) - overlap + step - 1) / step))};
  }
  bool found = false;
  double best_cost = 0;
  FitSide best;
  for (int64_t n = 2;; ++n) {
    const int64_t covered = static_cast<int64_t>(length) + (n - 1) * overlap;
    const int side = std::max(floor_side, ceil32(static_cast<int>((covered + n - 1) / n)));  // ceil32(ceil(covered/n))
    if (side > hi) continue;
    const double cost = static_cast<double>(n) * side + static_cast<double>(n) * kTileCostPx / hi;
    if (!found || cost < best_cost) {
      found = true;
      best_cost = cost;
      best = {side, static_cast<int>(n)};
    }
    if (side == floor_side) return best;  // more tiles of the same side only cost more
  }
}

void fit_tile(int hs, int ws, int overlap, int* tile_h, int* tile_w) {
  *tile_h = fit_side(hs, overlap).side;
  *tile_w = fit_side(ws, overlap).side;
}

bool plan_image(int h0, int w0, double model_scale, int tile_h, int tile_w, int overlap, bool is_static, Plan* out,
                std::string* err) {
  Plan p;
  p.h0 = h0;
  p.w0 = w0;
  if (model_scale != 1.0) {
    p.hs = std::max(1, static_cast<int>(std::nearbyint(h0 * model_scale)));
    p.ws = std::max(1, static_cast<int>(std::nearbyint(w0 * model_scale)));
    p.scale = (static_cast<double>(p.ws) / w0 + static_cast<double>(p.hs) / h0) / 2;
  } else {
    p.hs = h0;
    p.ws = w0;
  }
  int th = tile_h, tw = tile_w;
  if (th <= 0 || tw <= 0) {
    fit_tile(p.hs, p.ws, overlap, &th, &tw);
    is_static = false;
  }
  if (!is_static) {
    th = std::min(th, ceil32(p.hs));
    tw = std::min(tw, ceil32(p.ws));
  }
  std::vector<int> ys, xs;
  if (!tile_starts(p.hs, th, std::min(overlap, th / 2), &ys, err) ||
      !tile_starts(p.ws, tw, std::min(overlap, tw / 2), &xs, err))
    return false;
  auto cy = cores(ys, th, p.hs), cx = cores(xs, tw, p.ws);
  for (size_t i = 0; i < ys.size(); ++i)
    for (size_t j = 0; j < xs.size(); ++j) {
      Tile t;
      t.x0 = xs[j];
      t.y0 = ys[i];
      t.h = th;
      t.w = tw;
      t.core[0] = cx[j][0];
      t.core[1] = cy[i][0];
      t.core[2] = cx[j][1];
      t.core[3] = cy[i][1];
      p.tiles.push_back(t);
    }
  *out = std::move(p);
  return true;
}

bool owned(const Det& d, const Tile& t) {
  float cx = (d.box[0] + d.box[2]) / 2.0f + static_cast<float>(t.x0);
  float cy = (d.box[1] + d.box[3]) / 2.0f + static_cast<float>(t.y0);
  return cx >= static_cast<float>(t.core[0]) && cx < static_cast<float>(t.core[2]) &&
         cy >= static_cast<float>(t.core[1]) && cy < static_cast<float>(t.core[3]);
}

bool cut_by_tile(const Det& d, const Tile& t, const Plan& plan) {
  const float* b = d.box;
  return (t.x0 > 0 && b[0] <= kCutMargin) || (t.y0 > 0 && b[1] <= kCutMargin) ||
         (t.x0 + t.w < plan.ws && b[2] >= static_cast<float>(t.w) - kCutMargin) ||
         (t.y0 + t.h < plan.hs && b[3] >= static_cast<float>(t.h) - kCutMargin);
}

Tile rescue_tile(const float box[4], const Tile& t, const Plan& plan) {
  double cx = static_cast<double>(box[0] + box[2]) / 2, cy = static_cast<double>(box[1] + box[3]) / 2;
  Tile r;
  r.x0 = std::min(std::max(static_cast<int>(std::nearbyint(cx - t.w / 2.0)), 0), std::max(plan.ws - t.w, 0));
  r.y0 = std::min(std::max(static_cast<int>(std::nearbyint(cy - t.h / 2.0)), 0), std::max(plan.hs - t.h, 0));
  r.h = t.h;
  r.w = t.w;
  r.core[2] = plan.ws;
  r.core[3] = plan.hs;
  return r;
}

int covering(const std::vector<Det>& dets, const Tile& rt, const float c[4], const Plan& plan) {
  int best = -1;
  float best_iou = -1.0f;
  const float x0 = static_cast<float>(rt.x0), y0 = static_cast<float>(rt.y0);
  const float eps = 1e-6f;
  for (size_t i = 0; i < dets.size(); ++i) {
    const float* d = dets[i].box;
    float b[4] = {d[0] + x0, d[1] + y0, d[2] + x0, d[3] + y0};
    float iw = std::max(std::min(b[2], c[2]) - std::max(b[0], c[0]), 0.0f);
    float ih = std::max(std::min(b[3], c[3]) - std::max(b[1], c[1]), 0.0f);
    float inter = iw * ih;
    float area_c = std::max(c[2] - c[0], eps) * std::max(c[3] - c[1], eps);
    float area_b = (b[2] - b[0]) * (b[3] - b[1]);
    float iou = inter / std::max(area_b + area_c - inter, eps);
    bool ok = inter >= 0.6f * area_c && !cut_by_tile(dets[i], rt, plan);
    float key = ok ? iou : -1.0f;
    if (ok && (best < 0 || key > best_iou)) {
      best = static_cast<int>(i);
      best_iou = key;
    }
  }
  return best;
}

namespace {

// is_empty_tile's test on one plane of the looked-at pixels (`pick` reduces a pixel's channels to one value).
template <typename Pick>
bool empty_plane(const uint8_t* rgb, int width, int x0, int y0, int x_end, int y_end, Pick pick) {
  int64_t hist[256] = {0}, dhist[256] = {0};
  int64_t total = 0, diffs = 0;
  for (int y = y0; y < y_end; y += 4) {
    int prev = -1;
    for (int x = x0; x < x_end; x += 4) {
      const int g = pick(rgb + (static_cast<size_t>(y) * width + x) * 3);
      ++hist[g];
      ++total;
      if (prev >= 0) {
        ++dhist[std::abs(g - prev)];
        ++diffs;
      }
      prev = g;
    }
  }
  auto search = [](const int64_t* counts, int64_t target) {  // first value whose cumulative count >= target
    int64_t c = 0;
    for (int i = 0; i < 256; ++i) {
      c += counts[i];
      if (c >= target) return i;
    }
    return 256;
  };
  const int med = search(hist, (total + 1) / 2);
  // pixel noise: the median absolute difference of neighbouring looked-at pixels, as a Gaussian sigma
  const double sigma = diffs > 0 ? search(dhist, (diffs + 1) / 2) / (0.6745 * std::sqrt(2.0)) : 0.0;
  if (sigma > 8.0) return false;  // textured (tissue): never empty
  const double thresh = std::max(16.0, 5 * sigma);
  int64_t fg = 0;
  for (int i = 0; i < 256; ++i)
    if (std::abs(i - med) > thresh) fg += hist[i];
  return static_cast<double>(fg) * 16 < 48;
}

}  // namespace

bool is_empty_tile(const uint8_t* rgb, int width, int height, const Tile& t) {
  const int x_end = std::min(t.x0 + t.w, width), y_end = std::min(t.y0 + t.h, height);
  if (x_end <= t.x0 || y_end <= t.y0) return true;
  auto hi = [](const uint8_t* p) { return static_cast<int>(std::max(p[0], std::max(p[1], p[2]))); };
  auto lo = [](const uint8_t* p) { return static_cast<int>(std::min(p[0], std::min(p[1], p[2]))); };
  if (!empty_plane(rgb, width, t.x0, t.y0, x_end, y_end, hi)) return false;
  bool grey = true;  // brightest == darkest everywhere looked at: one plane is enough
  for (int y = t.y0; y < y_end && grey; y += 4)
    for (int x = t.x0; x < x_end; x += 4) {
      const uint8_t* p = rgb + (static_cast<size_t>(y) * width + x) * 3;
      if (hi(p) != lo(p)) {
        grey = false;
        break;
      }
    }
  return grey || empty_plane(rgb, width, t.x0, t.y0, x_end, y_end, lo);
}

// -------------------------------------------------------------------------------------------------- NMS
std::vector<int> nms(const std::vector<std::array<float, 4>>& boxes, const std::vector<float>& scores, float iou) {
  const int n = static_cast<int>(boxes.size());
  std::vector<int> kept;
  if (n == 0) return kept;
  // OpenCV's NMSBoxes gets float(score + 1) and Rect2d(x1, y1, x2 - x1, y2 - y1); stable sort by that score
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> key(n);
  for (int i = 0; i < n; ++i) key[i] = static_cast<float>(static_cast<double>(scores[i]) + 1.0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key[a] > key[b]; });
  struct R { double x, y, w, h; };
  std::vector<R> r(n);
  for (int i = 0; i < n; ++i) {
    const auto& b = boxes[i];
    r[i] = {b[0], b[1], static_cast<double>(b[2]) - b[0], static_cast<double>(b[3]) - b[1]};
  }
  const float thr = iou;
  for (int idx : order) {
    bool keep = true;
    const R& a = r[idx];
    for (int k : kept) {
      const R& b = r[k];
      double aa = a.w * a.h, ab = b.w * b.h;
      float overlap;
      if (aa + ab <= 2.220446049250313e-16) {
        overlap = 1.0f;
      } else {
        double x1 = std::max(a.x, b.x), y1 = std::max(a.y, b.y);
        double w = std::min(a.x + a.w, b.x + b.w) - x1, h = std::min(a.y + a.h, b.y + b.h) - y1;
        double inter = (w <= 0 || h <= 0) ? 0.0 : w * h;
        overlap = 1.0f - static_cast<float>(1.0 - inter / (aa + ab - inter));
      }
      if (overlap > thr) {
        keep = false;
        break;
      }
    }
    if (keep) kept.push_back(idx);
  }
  // the reference re-sorts: score descending (true scores), ties by input index
  std::sort(kept.begin(), kept.end());
  std::stable_sort(kept.begin(), kept.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  return kept;
}

std::vector<Det> decode_nms(const float* pred, int64_t anchors, int nc, int nm, float conf, float iou, int max_det) {
  const int64_t row = 5 + nc + nm;
  std::vector<int64_t> idx;
  std::vector<float> cf;
  std::vector<int> cl;
  for (int64_t a = 0; a < anchors; ++a) {
    const float* x = pred + a * row;
    if (!(x[4] > conf)) continue;
    float best = x[5] * x[4];
    int bc = 0;
    for (int c = 1; c < nc; ++c) {
      float v = x[5 + c] * x[4];
      if (v > best) { best = v; bc = c; }
    }
    if (!(best > conf)) continue;
    idx.push_back(a);
    cf.push_back(best);
    cl.push_back(bc);
  }
  std::vector<int> order(idx.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return cf[a] > cf[b]; });
  if (order.size() > static_cast<size_t>(kMaxNms)) order.resize(kMaxNms);
  std::vector<std::array<float, 4>> boxes(order.size()), shifted(order.size());
  std::vector<float> scores(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    const float* x = pred + idx[order[k]] * row;
    float hw = x[2] / 2.0f, hh = x[3] / 2.0f;
    boxes[k] = {x[0] - hw, x[1] - hh, x[0] + hw, x[1] + hh};
    float off = static_cast<float>(cl[order[k]]) * kMaxWH;
    shifted[k] = {boxes[k][0] + off, boxes[k][1] + off, boxes[k][2] + off, boxes[k][3] + off};
    scores[k] = cf[order[k]];
  }
  std::vector<int> keep = nms(shifted, scores, iou);
  if (keep.size() > static_cast<size_t>(max_det)) keep.resize(max_det);
  std::vector<Det> out;
  for (int k : keep) {
    const float* x = pred + idx[order[k]] * row;
    Det d;
    std::copy(boxes[k].begin(), boxes[k].end(), d.box);
    d.score = scores[k];
    d.cls = cl[order[k]];
    d.coeffs.assign(x + 5 + nc, x + 5 + nc + nm);
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<Det> e2e_rows(int num, const float* boxes, const float* scores, const float* classes, const float* coeffs,
                          int k, int nm, float conf, float graph_conf) {
  std::vector<Det> out;
  num = std::max(0, std::min(num, k));
  for (int i = 0; i < num; ++i) {
    if (conf > graph_conf && !(scores[i] > conf)) continue;
    Det d;
    std::copy(boxes + 4 * i, boxes + 4 * i + 4, d.box);
    d.score = scores[i];
    d.cls = static_cast<int>(classes[i]);
    d.coeffs.assign(coeffs + static_cast<int64_t>(i) * nm, coeffs + static_cast<int64_t>(i + 1) * nm);
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace asfyolo
