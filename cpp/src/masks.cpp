// Mask assembly, merge and painting (stages.hpp): the reference is kernels/mask_assembly/reference.py
// (box-local bilinear sampling of coeffs . protos at full resolution) and asfyolo_rt.runtime.stages.merge/paint.
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "stages.hpp"

namespace asfyolo {

float logit_threshold(double t) { return static_cast<float>(std::log(t / (1.0 - t))); }

namespace {

struct Src {
  int i0, i1;
  float lam;
};

// source_index of the reference: output pixel index -> bilinear corners on a prototype axis of n pixels.
Src source_index(int coord, float scale, float pad, int n) {
  float s = ((static_cast<float>(coord) + 0.5f) * scale + pad) * 0.25f - 0.5f;
  s = std::max(s, 0.0f);
  float i0 = std::min(std::floor(s), static_cast<float>(n - 1));
  float lam = std::min(std::max(s - i0, 0.0f), 1.0f);
  int a = static_cast<int>(i0);
  return {a, std::min(a + 1, n - 1), lam};
}

// box_windows: pixels whose centre lies in the half-open box, clipped to the image.
void box_window(const float b[4], int h, int w, int win[4]) {
  auto edge = [](float v, int hi) {
    float c = std::ceil(v - 0.5f);
    return static_cast<int>(std::min(std::max(c, 0.0f), static_cast<float>(hi)));
  };
  if (std::isnan(b[0]) || std::isnan(b[1]) || std::isnan(b[2]) || std::isnan(b[3])) {
    win[0] = win[1] = win[2] = win[3] = 0;
    return;
  }
  int lx = edge(b[0], w), hx = edge(b[2], w), ly = edge(b[1], h), hy = edge(b[3], h);
  win[0] = lx;
  win[1] = ly;
  win[2] = std::max(hx - lx, 0);
  win[3] = std::max(hy - ly, 0);
}

}  // namespace

Cand assemble(const Det& d, const float* protos, int nm, int hp, int wp, const Tile& t, const Plan& plan,
              float thr_logit) {
  Cand c;
  const float scale = static_cast<float>(plan.scale);
  const float sx = static_cast<float>(t.x0), sy = static_cast<float>(t.y0);
  float shift[4] = {sx, sy, sx, sy};
  for (int k = 0; k < 4; ++k) c.box[k] = (d.box[k] + shift[k]) / scale;
  c.box[0] = std::min(std::max(c.box[0], 0.0f), static_cast<float>(plan.w0));
  c.box[2] = std::min(std::max(c.box[2], 0.0f), static_cast<float>(plan.w0));
  c.box[1] = std::min(std::max(c.box[1], 0.0f), static_cast<float>(plan.h0));
  c.box[3] = std::min(std::max(c.box[3], 0.0f), static_cast<float>(plan.h0));
  c.score = d.score;
  c.cls = d.cls;
  box_window(c.box, plan.h0, plan.w0, c.win);
  const int x0 = c.win[0], y0 = c.win[1], w = c.win[2], h = c.win[3];
  if (w == 0 || h == 0) return c;
  c.mask.assign(static_cast<size_t>(w) * h, 0);
  const float px = -sx, py = -sy;
  std::vector<Src> xs(w), ys(h);
  for (int i = 0; i < w; ++i) xs[i] = source_index(x0 + i, scale, px, wp);
  for (int i = 0; i < h; ++i) ys[i] = source_index(y0 + i, scale, py, hp);
  const int qx0 = xs.front().i0, qx1 = xs.back().i1, qy0 = ys.front().i0, qy1 = ys.back().i1;
  const int pw = qx1 - qx0 + 1, ph = qy1 - qy0 + 1;
  // 1. logits at prototype resolution inside the proto window
  std::vector<float> lq(static_cast<size_t>(pw) * ph, 0.0f);
  const size_t plane = static_cast<size_t>(hp) * wp;
  for (int r = 0; r < ph; ++r) {
    float* out = lq.data() + static_cast<size_t>(r) * pw;
    for (int k = 0; k < nm; ++k) {
      const float ck = d.coeffs[k];
      const float* src = protos + k * plane + static_cast<size_t>(qy0 + r) * wp + qx0;
      for (int q = 0; q < pw; ++q) out[q] += src[q] * ck;
    }
  }
  // 2. along x for every proto row, 3. along y at every window pixel, threshold
  std::vector<float> tx(static_cast<size_t>(ph) * w);
  for (int r = 0; r < ph; ++r) {
    const float* l = lq.data() + static_cast<size_t>(r) * pw;
    float* o = tx.data() + static_cast<size_t>(r) * w;
    for (int i = 0; i < w; ++i) {
      const Src& s = xs[i];
      o[i] = (1.0f - s.lam) * l[s.i0 - qx0] + s.lam * l[s.i1 - qx0];
    }
  }
  for (int j = 0; j < h; ++j) {
    const Src& s = ys[j];
    const float* top = tx.data() + static_cast<size_t>(s.i0 - qy0) * w;
    const float* bot = tx.data() + static_cast<size_t>(s.i1 - qy0) * w;
    uint8_t* m = c.mask.data() + static_cast<size_t>(j) * w;
    const float a = 1.0f - s.lam, b = s.lam;
    for (int i = 0; i < w; ++i) m[i] = (a * top[i] + b * bot[i]) > thr_logit ? 1 : 0;
  }
  return c;
}

std::vector<Cand> merge(std::vector<Cand> cands, int h0, int w0, float iou, bool global_nms) {
  std::vector<int> keep;
  std::vector<float> scores(cands.size());
  for (size_t i = 0; i < cands.size(); ++i) scores[i] = cands[i].score;
  if (global_nms) {
    const float off = static_cast<float>(std::max(static_cast<double>(kMaxWH), std::max(h0, w0) + 1.0));
    std::vector<std::array<float, 4>> b(cands.size());
    for (size_t i = 0; i < cands.size(); ++i) {
      float o = static_cast<float>(cands[i].cls) * off;
      b[i] = {cands[i].box[0] + o, cands[i].box[1] + o, cands[i].box[2] + o, cands[i].box[3] + o};
    }
    keep = nms(b, scores, iou);
  } else {
    keep.resize(cands.size());
    std::iota(keep.begin(), keep.end(), 0);
    std::stable_sort(keep.begin(), keep.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  }
  std::vector<Cand> out;
  out.reserve(keep.size());
  for (int k : keep) out.push_back(std::move(cands[k]));
  return out;
}

namespace {

void paint_labels(const std::vector<Cand>& c, int h0, int w0, std::vector<uint32_t>* labels) {
  labels->assign(static_cast<size_t>(h0) * w0, 0);
  std::vector<int> order(c.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return static_cast<double>(c[a].score) > static_cast<double>(c[b].score); });
  for (int i : order) {  // highest priority first: a pixel keeps the first mask that covers it
    const Cand& k = c[i];
    for (int y = 0; y < k.win[3]; ++y) {
      uint32_t* row = labels->data() + static_cast<size_t>(k.win[1] + y) * w0 + k.win[0];
      const uint8_t* m = k.mask.data() + static_cast<size_t>(y) * k.win[2];
      for (int x = 0; x < k.win[2]; ++x)
        if (m[x] && row[x] == 0) row[x] = static_cast<uint32_t>(i + 1);
    }
  }
}

}  // namespace

void paint(std::vector<Cand>* cands, int h0, int w0, double min_visible, std::vector<uint32_t>* labels) {
  paint_labels(*cands, h0, w0, labels);
  const size_t n = cands->size();
  if (n == 0 || min_visible <= 0) return;
  std::vector<int64_t> visible(n + 1, 0);
  for (uint32_t v : *labels) ++visible[v];
  std::vector<Cand> kept;
  bool all = true;
  for (size_t i = 0; i < n; ++i) {
    int64_t area = 0;
    for (uint8_t m : (*cands)[i].mask) area += m;
    if (static_cast<double>(visible[i + 1]) >= min_visible * static_cast<double>(std::max<int64_t>(area, 1)))
      kept.push_back(std::move((*cands)[i]));
    else
      all = false;
  }
  *cands = std::move(kept);
  if (!all) paint_labels(*cands, h0, w0, labels);
}

}  // namespace asfyolo
