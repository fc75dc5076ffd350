// A whole frame through the stages (pipeline.hpp).
#include "pipeline.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

namespace asfyolo {
namespace {

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

const Output* find(const std::vector<Output>& outs, const char* name) {
  for (const Output& o : outs)
    if (o.name == name) return &o;
  return nullptr;
}

// read_tile + preprocess: the tile's pixels (114 beyond the image) as float32 / 255, planar RGB.
void fill_tile(const Rgb8& img, const Tile& t, float* dst) {
  const size_t plane = static_cast<size_t>(t.h) * t.w;
  const float pad = static_cast<float>(kPadValue) / 255.0f;
  for (int y = 0; y < t.h; ++y) {
    int sy = t.y0 + y;
    float* r = dst + static_cast<size_t>(y) * t.w;
    float* g = r + plane;
    float* b = g + plane;
    int x = 0;
    if (sy < img.height) {
      const uint8_t* s = img.px.data() + (static_cast<size_t>(sy) * img.width + t.x0) * 3;
      int inside = std::max(0, std::min(t.w, img.width - t.x0));
      for (; x < inside; ++x) {
        r[x] = static_cast<float>(s[3 * x]) / 255.0f;
        g[x] = static_cast<float>(s[3 * x + 1]) / 255.0f;
        b[x] = static_cast<float>(s[3 * x + 2]) / 255.0f;
      }
    }
    for (; x < t.w; ++x) r[x] = g[x] = b[x] = pad;
  }
}

}  // namespace

bool make_settings(const ModelInfo& info, double conf, double iou, int max_det, double min_visible,
                   double mask_threshold, int overlap, int tile, int batch, int threads, Settings* out,
                   std::string* err) {
  Settings s;
  s.conf = conf >= 0 ? conf : info.default_conf();
  s.iou = iou >= 0 ? iou : info.iou;
  s.max_det = max_det >= 0 ? max_det : info.max_det;
  s.min_visible = min_visible >= 0 ? min_visible : info.min_visible;
  s.mask_threshold = mask_threshold >= 0 ? mask_threshold : info.mask_threshold;
  s.overlap = overlap;
  s.tile = tile > 0 ? tile : 0;
  s.batch = batch > 0 ? batch : 1;
  s.threads = threads;
  s.model_scale = info.model_scale;
  s.object_px = info.overlap_object_px();
  s.train_pixel_size = info.pixel_size_um;
  if (!(s.conf >= 0 && s.conf < 1)) *err = "options.conf " + std::to_string(s.conf) + ": expected [0, 1)";
  else if (!(s.iou > 0 && s.iou <= 1)) *err = "options.iou " + std::to_string(s.iou) + ": expected (0, 1]";
  else if (s.max_det < 1 || s.max_det > 1000000) *err = "options.max_det " + std::to_string(s.max_det) + ": expected 1..1000000";
  else if (!(s.min_visible >= 0 && s.min_visible <= 1)) *err = "options.min_visible: expected [0, 1]";
  else if (!(s.mask_threshold > 0 && s.mask_threshold < 1)) *err = "options.mask_threshold: expected (0, 1)";
  else if (s.tile % 32 || s.tile > 8192) *err = "options.tile_size " + std::to_string(s.tile) + ": expected a multiple of 32 up to 8192";
  else if (s.batch > 256) *err = "options.batch " + std::to_string(s.batch) + ": expected 1..256";
  else if (overlap > 8192) *err = "options.tile_overlap " + std::to_string(overlap) + ": expected 0..8192";
  else if (threads < 0 || threads > 1024) *err = "options.threads " + std::to_string(threads) + ": expected 0..1024";
  if (!err->empty()) return false;
  *out = s;
  return true;
}

Pipeline::Pipeline(std::shared_ptr<Backend> backend, ModelInfo info, Settings s)
    : backend_(std::move(backend)), info_(std::move(info)), s_(s) {
  batch_ = backend_->static_batch() > 0 ? backend_->static_batch() : s_.batch;
}

bool Pipeline::for_tiles(const Rgb8& scaled, const std::vector<Tile>& tiles, const TileFn& fn, Times* t,
                         std::string* err) {
  if (tiles.empty()) return true;
  const size_t nb = (tiles.size() + batch_ - 1) / batch_;
  int hw = static_cast<int>(std::thread::hardware_concurrency());
  int cap = s_.threads > 0 ? s_.threads : std::max(1, hw);
  const int workers = static_cast<int>(std::min<size_t>(nb, std::max(1, std::min(backend_->parallel(), cap))));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Times total;
  auto work = [&]() {  // never lets an exception out of a thread (that would abort the host process)
    Times mine;
    try {
      std::vector<float> input;
      std::vector<Output> outs;
      std::string e;
      while (!failed) {
        size_t b = next++;
        if (b >= nb) break;
        double t0 = now_ms();
        size_t first = b * batch_, n = std::min<size_t>(batch_, tiles.size() - first);
        const Tile& t1 = tiles[first];
        int npad = backend_->static_batch() > 0 ? backend_->static_batch() : static_cast<int>(n);
        const size_t per = static_cast<size_t>(3) * t1.h * t1.w;
        input.assign(per * npad, 0.0f);
        for (size_t k = 0; k < n; ++k) fill_tile(scaled, tiles[first + k], input.data() + per * k);
        double t_a = now_ms();
        outs.clear();
        bool ok = backend_->infer(input.data(), npad, t1.h, t1.w, false, &outs, &e);
        double t_b = now_ms();
        const Output* protos = ok ? find(outs, "protos") : nullptr;
        if (ok && (!protos || protos->shape.size() != 4 || protos->shape[0] < static_cast<int64_t>(n))) {
          ok = false;
          e = std::string(backend_->name()) + ": no protos output of shape (n, nm, h/4, w/4)";
        }
        const Output* pred = ok ? find(outs, "pred") : nullptr;
        if (ok && !backend_->end_to_end() && (!pred || pred->shape.size() != 3 || pred->shape[2] < 6 + protos->shape[1])) {
          ok = false;
          e = std::string(backend_->name()) + ": no pred output of shape (n, anchors, 5 + nc + nm)";
        }
        if (!ok) {
          std::lock_guard<std::mutex> g(mu);
          if (!failed.exchange(true)) *err = e;
          break;
        }
        const int nm = static_cast<int>(protos->shape[1]), hp = static_cast<int>(protos->shape[2]),
                  wp = static_cast<int>(protos->shape[3]);
        for (size_t k = 0; k < n; ++k) {
          std::vector<Det> dets;
          if (!backend_->end_to_end()) {
            const int64_t anchors = pred->shape[1];
            const int nc = static_cast<int>(pred->shape[2]) - 5 - nm;
            dets = decode_nms(pred->data.data() + k * anchors * pred->shape[2], anchors, nc, nm,
                              static_cast<float>(s_.conf), static_cast<float>(s_.iou), s_.max_det);
          } else {
            const Output *num = find(outs, "num_dets"), *bx = find(outs, "boxes"), *sc = find(outs, "scores"),
                         *cl = find(outs, "classes"), *co = find(outs, "coeffs");
            if (num && bx && sc && cl && co && sc->shape.size() == 2) {
              const int kk = static_cast<int>(sc->shape[1]);
              auto it = info_.e2e_thresholds.find("conf_threshold");
              float gconf = it == info_.e2e_thresholds.end() ? 0.0f : static_cast<float>(it->second);
              dets = e2e_rows(static_cast<int>(num->data[k]), bx->data.data() + k * kk * 4, sc->data.data() + k * kk,
                              cl->data.data() + k * kk, co->data.data() + k * kk * nm, kk, nm,
                              static_cast<float>(s_.conf), gconf);
            }
          }
          fn(first + k, &dets, protos->data.data() + k * static_cast<size_t>(nm) * hp * wp, hp, wp);
        }
        double t_c = now_ms();
        mine.pre += t_a - t0;
        mine.inf += t_b - t_a;
        mine.post += t_c - t_b;
      }
    } catch (const std::bad_alloc&) {
      std::lock_guard<std::mutex> g(mu);
      if (!failed.exchange(true)) *err = "out of memory while running tiles";
    } catch (const std::exception& ex) {
      std::lock_guard<std::mutex> g(mu);
      if (!failed.exchange(true)) *err = std::string("tile worker failed: ") + ex.what();
    }
    std::lock_guard<std::mutex> g(mu);
    total.pre += mine.pre;
    total.inf += mine.inf;
    total.post += mine.post;
  };
  double w0 = now_ms();
  if (workers == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int k = 0; k < workers; ++k) pool.emplace_back(work);
    for (auto& th : pool) th.join();
  }
  // worker time summed over threads, shared out over the wall time of the loop
  double wall = now_ms() - w0, sum = total.pre + total.inf + total.post;
  if (sum > 0) {
    t->pre += wall * total.pre / sum;
    t->inf += wall * total.inf / sum;
    t->post += wall * total.post / sum;
  }
  return !failed;
}

Pipeline::Status Pipeline::run(const Rgb8& rgb, double pixel_size, FrameOut* out, std::string* err) {
  const double t_start = now_ms();
  double scale = s_.model_scale;
  if (pixel_size > 0 && s_.train_pixel_size > 0) scale = s_.model_scale * pixel_size / s_.train_pixel_size;
  if (!(scale >= 0.01 && scale <= 100)) {
    *err = "pixel_size_um " + std::to_string(pixel_size) + " gives a model scale of " + std::to_string(scale) +
           "; expected [0.01, 100]";
    return kBadInput;
  }
  // a static model's shape; else the caller's tile size; else each image's own tile (0: plan_image's fit_tile)
  // where the backend compiles per shape, kDefaultTile where it does not
  const bool is_static = backend_->input_height() > 0 && backend_->input_width() > 0;
  const int dyn = s_.tile > 0 ? s_.tile : backend_->per_image_tiles() ? 0 : kDefaultTile;
  const int th = is_static ? backend_->input_height() : dyn, tw = is_static ? backend_->input_width() : dyn;
  const int overlap = s_.overlap >= 0 ? s_.overlap : overlap_for(s_.object_px);
  Plan plan;
  if (!plan_image(rgb.height, rgb.width, scale, th, tw, overlap, is_static, &plan, err)) return kBadInput;
  if (int64_t(plan.hs) * plan.ws > kMaxPixels * 4) {
    *err = "the frame at model scale (" + std::to_string(plan.ws) + "x" + std::to_string(plan.hs) + ") is too large";
    return kBadInput;
  }
  const int threads = s_.threads > 0 ? s_.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  Rgb8 resized;
  const Rgb8* scaled = &rgb;
  if (plan.hs != rgb.height || plan.ws != rgb.width) {
    resize_rgb8(rgb, plan.ws, plan.hs, &resized, threads);
    scaled = &resized;
  }
  Times times;
  times.pre = now_ms() - t_start;
  const float thr = logit_threshold(s_.mask_threshold);
  const size_t nt = plan.tiles.size();
  std::vector<std::vector<Cand>> owned_c(nt);
  std::vector<std::vector<std::pair<Det, Cand>>> cuts(nt);  // cut detections (box in scaled px) + fallback
  auto own_fn = [&](size_t i, std::vector<Det>* dets, const float* protos, int hp, int wp) {
    const Tile& t = plan.tiles[i];
    for (Det& d : *dets) {
      if (!owned(d, t)) continue;
      Cand c = assemble(d, protos, static_cast<int>(d.coeffs.size()), hp, wp, t, plan, thr);
      if (cut_by_tile(d, t, plan)) {
        Det s = d;
        const float sx = static_cast<float>(t.x0), sy = static_cast<float>(t.y0);
        s.box[0] += sx; s.box[1] += sy; s.box[2] += sx; s.box[3] += sy;
        cuts[i].emplace_back(std::move(s), std::move(c));
      } else {
        owned_c[i].push_back(std::move(c));
      }
    }
  };
  std::vector<Tile> run;  // the tiles with content, in plan order (ownership indexes plan.tiles)
  std::vector<size_t> index;
  for (size_t i = 0; i < nt; ++i)
    if (!s_.skip_empty || !is_empty_tile(scaled->px.data(), scaled->width, scaled->height, plan.tiles[i])) {
      run.push_back(plan.tiles[i]);
      index.push_back(i);
    }
  auto run_fn = [&](size_t k, std::vector<Det>* dets, const float* protos, int hp, int wp) {
    own_fn(index[k], dets, protos, hp, wp);
  };
  if (!for_tiles(*scaled, run, run_fn, &times, err)) return kBackendFailed;
  // rescue: a tile centred on each cut cell; the whole cell found there replaces the cut one
  std::vector<const std::pair<Det, Cand>*> jobs;
  std::vector<Tile> rtiles;
  for (size_t i = 0; i < nt; ++i)
    for (const auto& dc : cuts[i]) {
      jobs.push_back(&dc);
      rtiles.push_back(rescue_tile(dc.first.box, plan.tiles[i], plan));
    }
  std::vector<Cand> rescued(jobs.size());
  auto rescue_fn = [&](size_t j, std::vector<Det>* dets, const float* protos, int hp, int wp) {
    int k = covering(*dets, rtiles[j], jobs[j]->first.box, plan);
    rescued[j] = k < 0 ? jobs[j]->second
                       : assemble((*dets)[k], protos, static_cast<int>((*dets)[k].coeffs.size()), hp, wp, rtiles[j],
                                  plan, thr);
  };
  if (!for_tiles(*scaled, rtiles, rescue_fn, &times, err)) return kBackendFailed;
  double t_m = now_ms();
  std::vector<Cand> all;
  for (auto& v : owned_c)
    for (auto& c : v) all.push_back(std::move(c));
  for (auto& c : rescued) all.push_back(std::move(c));
  all = merge(std::move(all), plan.h0, plan.w0, static_cast<float>(s_.iou), nt > 1);
  paint(&all, plan.h0, plan.w0, s_.min_visible, &out->labels);
  // the cell table, measured on the label map inside each cell's window
  out->cells.clear();
  for (size_t i = 0; i < all.size(); ++i) {
    const Cand& c = all[i];
    CellRow r;
    std::copy(c.box, c.box + 4, r.box);
    std::copy(c.win, c.win + 4, r.win);
    r.score = c.score;
    r.cls = c.cls;
    int64_t sx = 0, sy = 0, a = 0;
    for (int y = 0; y < c.win[3]; ++y) {
      const uint32_t* row = out->labels.data() + static_cast<size_t>(c.win[1] + y) * plan.w0 + c.win[0];
      for (int x = 0; x < c.win[2]; ++x)
        if (row[x] == i + 1) { ++a; sx += x; sy += y; }
    }
    r.area = a;
    r.cx = a ? static_cast<double>(sx) / a + c.win[0] + 0.5 : std::nan("");
    r.cy = a ? static_cast<double>(sy) / a + c.win[1] + 0.5 : std::nan("");
    r.diameter = 2 * std::sqrt(static_cast<double>(a) / M_PI);
    out->cells.push_back(r);
  }
  out->width = plan.w0;
  out->height = plan.h0;
  out->tiles = static_cast<int>(nt);
  times.post += now_ms() - t_m;
  out->preprocess_ms = times.pre;
  out->inference_ms = times.inf;
  out->postprocess_ms = times.post;
  out->total_ms = now_ms() - t_start;
  return kOk;
}

}  // namespace asfyolo
