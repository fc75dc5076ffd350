// The C ABI (include/asfyolo.h): every entry point catches everything, validates its arguments, and reports
// failures as a status plus one line in the handle's (or the thread's) last error.
#include <chrono>
#include <cmath>
#include <cstring>
#include <new>

#include "asfyolo.h"
#include "capi_internal.hpp"
#include "json.hpp"
#include "polygon.hpp"
#ifdef ASFYOLO_WITH_TENSORRT
#include "tensorrt/device_frame.hpp"
#endif

struct asfyolo_result {
  asfyolo::FrameOut out;
};

namespace {

thread_local std::string g_error;  // errors of calls without a usable handle

asfyolo_status fail(asfyolo_segmenter* seg, asfyolo_status code, const std::string& msg) {
  if (seg) seg->error = msg;
  g_error = msg;
  return code;
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

std::string opt_str(const char* s) { return s ? std::string(s) : std::string(); }

// A handle that holds only an error, so the caller can read it (and must free it).
asfyolo_status error_handle(asfyolo_segmenter** out, asfyolo_status code, const std::string& msg) {
  g_error = msg;
  *out = new (std::nothrow) asfyolo_segmenter();
  if (*out) (*out)->error = msg;
  return code;
}

std::string settings_json(const asfyolo::Pipeline& p, const std::string& source) {
  const asfyolo::Settings& s = p.settings();
  const asfyolo::Backend& b = *p.backend();
  // the tile (H, W): a static model's input, else the caller's size or the default; [0, 0]: each frame's own
  const bool fixed = b.input_height() > 0 && b.input_width() > 0;
  const int side = s.tile > 0 ? s.tile : b.per_image_tiles() ? 0 : asfyolo::kDefaultTile;
  const int tile_h = fixed ? b.input_height() : side, tile_w = fixed ? b.input_width() : side;
  char buf[768];
  std::snprintf(buf, sizeof buf,
                ", \"backend\": \"%s\", \"input\": [%d, %d], \"batch\": %d, \"parallel\": %d, "
                "\"conf\": %.9g, \"iou\": %.9g, \"max_det\": %d, \"min_visible\": %.9g, \"mask_threshold\": %.9g, "
                "\"tile_overlap\": %d, \"tile\": [%d, %d], \"model_scale\": %.9g, \"schema_version\": %s, "
                "\"model_info\": ",
                b.name(), b.input_height(), b.input_width(), b.static_batch(),
                b.parallel(), s.conf, s.iou, s.max_det, s.min_visible, s.mask_threshold,
                s.overlap >= 0 ? s.overlap : asfyolo::overlap_for(s.object_px), tile_h, tile_w, s.model_scale,
                asfyolo::json_quote(p.info().schema_version).c_str());
  // the source path outside the fixed buffer: a long path never truncates the JSON
  return "{\"source\": " + asfyolo::json_quote(source) + buf + p.info().json + "}";
}

}  // namespace

namespace asfyolo {

asfyolo_status open_with_backend(std::unique_ptr<Backend> backend, const std::string& info_json,
                                 const std::string& source, const asfyolo_options* o, asfyolo_segmenter** out) {
  ModelInfo info;
  std::string err;
  if (!parse_model_info(info_json, source, &info, &err)) return error_handle(out, ASFYOLO_ERR_MODEL_INFO, err);
  asfyolo_options d;
  asfyolo_options_init(&d);
  if (!o) o = &d;
  if (o->fit)
    return error_handle(out, ASFYOLO_ERR_UNSUPPORTED,
                        "options.fit: the C runtime runs native-scale tiles only; set fit = 0");
  Settings s;
  if (!make_settings(info, o->conf, o->iou, o->max_det, o->min_visible, o->mask_threshold, o->tile_overlap,
                     o->tile_size, o->batch, o->threads, &s, &err))
    return error_handle(out, ASFYOLO_ERR_ARGUMENT, err);
  s.skip_empty = o->skip_empty != 0;
  auto* seg = new asfyolo_segmenter();
  seg->pipe = std::make_shared<Pipeline>(std::shared_ptr<Backend>(std::move(backend)), info, s);
  seg->info = settings_json(*seg->pipe, source);
  *out = seg;
  return ASFYOLO_OK;
}

}  // namespace asfyolo

extern "C" {

const char* asfyolo_version(void) { return ASFYOLO_VERSION_STRING; }
int asfyolo_abi_version(void) { return ASFYOLO_ABI_VERSION; }

const char* asfyolo_build_info(void) {
#if defined(ASFYOLO_WITH_OPENVINO) && defined(ASFYOLO_WITH_TENSORRT)
  return "openvino,tensorrt";
#elif defined(ASFYOLO_WITH_OPENVINO)
  return "openvino";
#elif defined(ASFYOLO_WITH_TENSORRT)
  return "tensorrt";
#else
  return "";
#endif
}

void asfyolo_options_init(asfyolo_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->conf = o->iou = o->min_visible = o->mask_threshold = -1.0;
  o->max_det = o->tile_overlap = o->skip_empty = -1;
}

asfyolo_status asfyolo_segmenter_open(const char* path, const asfyolo_options* o, asfyolo_segmenter** out) {
  if (!out) return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "out: NULL; pass the address of an asfyolo_segmenter*");
  *out = nullptr;
  try {
    if (!path) return error_handle(out, ASFYOLO_ERR_ARGUMENT, "path: NULL; give a bundle folder or a model file");
    if (o && o->struct_size != sizeof(asfyolo_options))
      return error_handle(out, ASFYOLO_ERR_ARGUMENT,
                          "options.struct_size " + std::to_string(o->struct_size) + ": call asfyolo_options_init first");
    std::string model, info_json, info_source, err;
    if (!asfyolo::locate_model(path, o ? opt_str(o->model_file) : "", &model, &info_json, &info_source, &err))
      return error_handle(out, err.find("model_info") != std::string::npos || err.find("schema") != std::string::npos
                                   ? ASFYOLO_ERR_MODEL_INFO : ASFYOLO_ERR_FILE, err);
    asfyolo::ModelInfo probe;  // refuse a bad model info before loading any runtime
    if (!asfyolo::parse_model_info(info_json, info_source, &probe, &err))
      return error_handle(out, ASFYOLO_ERR_MODEL_INFO, err);
    asfyolo::BackendOptions bo;
    std::string backend = o ? opt_str(o->backend) : "";
    if (o) {
      bo.device = o->device ? o->device : "";
      bo.precision = opt_str(o->precision);
      bo.threads = o->threads;
      bo.requests = o->requests;
      if (o->threads < 0 || o->requests < 0 || o->requests > 64)
        return error_handle(out, ASFYOLO_ERR_ARGUMENT, "options.threads/requests: expected >= 0 (requests <= 64)");
    }
    std::string suf = asfyolo::lower_suffix(model);
    bool engine = suf == ".engine" || suf == ".plan";
    if (backend.empty() || backend == "auto") backend = engine ? "tensorrt" : "openvino";
    std::unique_ptr<asfyolo::Backend> b;
    if (backend == "openvino") {
      if (engine) return error_handle(out, ASFYOLO_ERR_ARGUMENT, model + ": a TensorRT engine; use backend tensorrt");
#ifdef ASFYOLO_WITH_OPENVINO
      if (bo.device.empty()) bo.device = "CPU";
      b = asfyolo::open_openvino(model, info_json, bo, &err);
#else
      return error_handle(out, ASFYOLO_ERR_UNSUPPORTED, "backend openvino: this library was built without OpenVINO");
#endif
    } else if (backend == "tensorrt") {
      if (!engine)
        return error_handle(out, ASFYOLO_ERR_ARGUMENT,
                            model + ": backend tensorrt runs .engine/.plan files; build one with `asfyolo-rt build`");
#ifdef ASFYOLO_WITH_TENSORRT
      if (bo.device.empty()) bo.device = "cuda:0";
      b = asfyolo::open_tensorrt(model, info_json, bo, &err);
#else
      return error_handle(out, ASFYOLO_ERR_UNSUPPORTED,
                          "backend tensorrt: this library was built without TensorRT "
                          "(configure with -DASFYOLO_WITH_TENSORRT=ON)");
#endif
    } else {
      return error_handle(out, ASFYOLO_ERR_ARGUMENT,
                          "options.backend '" + backend + "': expected auto, openvino or tensorrt");
    }
    if (!b) return error_handle(out, ASFYOLO_ERR_BACKEND, err.empty() ? model + ": backend failed to open" : err);
    return asfyolo::open_with_backend(std::move(b), info_json, model, o, out);  // info already checked
  } catch (const std::bad_alloc&) {
    return error_handle(out, ASFYOLO_ERR_MEMORY, "out of memory while opening the model");
  } catch (const std::exception& e) {
    return error_handle(out, ASFYOLO_ERR_INTERNAL, std::string("internal error while opening: ") + e.what());
  } catch (...) {
    return error_handle(out, ASFYOLO_ERR_INTERNAL, "internal error while opening");
  }
}

asfyolo_status asfyolo_segmenter_clone(asfyolo_segmenter* seg, asfyolo_segmenter** out) {
  if (!out) return fail(seg, ASFYOLO_ERR_ARGUMENT, "out: NULL");
  *out = nullptr;
  if (!seg || !seg->pipe) return fail(seg, ASFYOLO_ERR_ARGUMENT, "seg: NULL or a handle that failed to open");
  try {
    auto* c = new asfyolo_segmenter();
    c->pipe = seg->pipe;
    c->info = seg->info;
    *out = c;
    return ASFYOLO_OK;
  } catch (...) {
    return fail(seg, ASFYOLO_ERR_MEMORY, "out of memory while cloning");
  }
}

void asfyolo_segmenter_free(asfyolo_segmenter* seg) { delete seg; }

const char* asfyolo_last_error(const asfyolo_segmenter* seg) { return seg ? seg->error.c_str() : g_error.c_str(); }

const char* asfyolo_segmenter_info(asfyolo_segmenter* seg) { return seg ? seg->info.c_str() : ""; }

static asfyolo_status segment(asfyolo_segmenter* seg, const asfyolo_image* im, asfyolo_result** out, bool device) {
  if (!out) return fail(seg, ASFYOLO_ERR_ARGUMENT, "out: NULL; pass the address of an asfyolo_result*");
  *out = nullptr;
  if (!seg) return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "seg: NULL");
  if (!seg->pipe) return fail(seg, ASFYOLO_ERR_ARGUMENT, "seg: this handle failed to open: " + seg->error);
  if (!im) return fail(seg, ASFYOLO_ERR_ARGUMENT, "image: NULL");
  const bool gpu = std::string(seg->pipe->backend()->name()).rfind("tensorrt", 0) == 0;
  if (device && !gpu)
    return fail(seg, ASFYOLO_ERR_UNSUPPORTED,
                std::string("asfyolo_segment_device: the ") + seg->pipe->backend()->name() +
                    " backend takes host memory only; use asfyolo_segment");
  try {
#ifdef ASFYOLO_WITH_TENSORRT
    asfyolo_image host_view;
    std::vector<unsigned char> host;
#endif
    if (device) {  // the frame comes to the host once (pitched rows packed); tiling runs on the CPU
#ifdef ASFYOLO_WITH_TENSORRT
      int fmt = 0;
      std::memcpy(&fmt, &im->format, sizeof fmt);
      const int bpp = asfyolo::bytes_per_pixel(fmt);
      std::string derr;
      if (bpp == 0 || im->width < 1 || im->height < 1)
        return fail(seg, ASFYOLO_ERR_ARGUMENT, "image: format or size out of range for a device frame");
      if (!asfyolo::download_device_frame(im->data, im->stride_bytes, int64_t(im->width) * bpp, im->height, &host,
                                          &derr))
        return fail(seg, ASFYOLO_ERR_ARGUMENT, derr);
      host_view = *im;
      host_view.data = host.data();
      host_view.stride_bytes = int64_t(im->width) * bpp;
      host_view.data_bytes = static_cast<int64_t>(host.size());
      im = &host_view;
#else
      return fail(seg, ASFYOLO_ERR_UNSUPPORTED, "asfyolo_segment_device: built without TensorRT");
#endif
    }
    std::string err;
    int format = 0;  // read as int: a C caller may pass any value, and an out-of-range C++ enum load is UB
    static_assert(sizeof(asfyolo_pixel_format) == sizeof(int), "enum size");
    std::memcpy(&format, &im->format, sizeof format);
    if (!asfyolo::check_frame(im->data, im->width, im->height, im->stride_bytes, format, &err))
      return fail(seg, ASFYOLO_ERR_ARGUMENT, err);
    const int64_t need =
        (int64_t(im->height) - 1) * im->stride_bytes + int64_t(im->width) * asfyolo::bytes_per_pixel(format);
    if (im->data_bytes < 0 || (im->data_bytes > 0 && im->data_bytes < need))
      return fail(seg, ASFYOLO_ERR_ARGUMENT, "image.data_bytes " + std::to_string(im->data_bytes) + ": the frame needs " +
                                                 std::to_string(need) + " bytes");
    if (!(std::isfinite(im->pixel_size_um) && im->pixel_size_um >= 0 && im->pixel_size_um < 1000))
      return fail(seg, ASFYOLO_ERR_ARGUMENT,
                  "image.pixel_size_um: expected micrometres per pixel in [0, 1000) (0: unknown)");
    double t0 = now_ms();
    asfyolo::Rgb8 rgb;
    asfyolo::to_rgb8(im->data, im->width, im->height, im->stride_bytes, format, &rgb);
    double read_ms = now_ms() - t0;
    auto* r = new asfyolo_result();
    asfyolo::Pipeline::Status st = seg->pipe->run(rgb, im->pixel_size_um, &r->out, &err);
    if (st != asfyolo::Pipeline::kOk) {
      delete r;
      return fail(seg, st == asfyolo::Pipeline::kBackendFailed ? ASFYOLO_ERR_BACKEND : ASFYOLO_ERR_ARGUMENT, err);
    }
    r->out.read_ms = read_ms;
    r->out.total_ms += read_ms;
    *out = r;
    seg->error.clear();
    return ASFYOLO_OK;
  } catch (const std::bad_alloc&) {
    return fail(seg, ASFYOLO_ERR_MEMORY, "out of memory while segmenting a " + std::to_string(im->width) + "x" +
                                             std::to_string(im->height) + " frame");
  } catch (const std::exception& e) {
    return fail(seg, ASFYOLO_ERR_INTERNAL, std::string("internal error while segmenting: ") + e.what());
  } catch (...) {
    return fail(seg, ASFYOLO_ERR_INTERNAL, "internal error while segmenting");
  }
}

asfyolo_status asfyolo_segment(asfyolo_segmenter* seg, const asfyolo_image* im, asfyolo_result** out) {
  return segment(seg, im, out, false);
}

asfyolo_status asfyolo_segment_device(asfyolo_segmenter* seg, const asfyolo_image* im, asfyolo_result** out) {
  return segment(seg, im, out, true);
}

void asfyolo_result_free(asfyolo_result* r) { delete r; }
int32_t asfyolo_result_width(const asfyolo_result* r) { return r ? r->out.width : 0; }
int32_t asfyolo_result_height(const asfyolo_result* r) { return r ? r->out.height : 0; }
int64_t asfyolo_result_count(const asfyolo_result* r) { return r ? static_cast<int64_t>(r->out.cells.size()) : 0; }
int32_t asfyolo_result_tiles(const asfyolo_result* r) { return r ? r->out.tiles : 0; }
const uint32_t* asfyolo_result_labels(const asfyolo_result* r) { return r ? r->out.labels.data() : nullptr; }

asfyolo_status asfyolo_result_copy_labels(const asfyolo_result* r, uint32_t* dst, int64_t stride, int64_t capacity) {
  if (!r || !dst) return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "result or dst: NULL");
  const int64_t w = r->out.width, h = r->out.height;
  if (stride < w * 4)
    return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "stride_bytes " + std::to_string(stride) + " < width * 4");
  if (capacity < (h - 1) * stride + w * 4)
    return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "capacity_bytes " + std::to_string(capacity) + ": the label map needs " +
                                                   std::to_string((h - 1) * stride + w * 4));
  for (int64_t y = 0; y < h; ++y)
    std::memcpy(reinterpret_cast<char*>(dst) + y * stride, r->out.labels.data() + y * w, static_cast<size_t>(w) * 4);
  return ASFYOLO_OK;
}

asfyolo_status asfyolo_result_cell(const asfyolo_result* r, int64_t i, asfyolo_cell* c) {
  if (!r || !c) return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "result or out: NULL");
  if (i < 0 || i >= static_cast<int64_t>(r->out.cells.size()))
    return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "index " + std::to_string(i) + ": expected 0.." +
                                                   std::to_string(static_cast<int64_t>(r->out.cells.size()) - 1));
  const asfyolo::CellRow& k = r->out.cells[i];
  c->id = static_cast<uint32_t>(i + 1);
  c->class_id = k.cls;
  c->score = k.score;
  c->x1 = k.box[0];
  c->y1 = k.box[1];
  c->x2 = k.box[2];
  c->y2 = k.box[3];
  c->area_px = k.area;
  c->centroid_x = k.cx;
  c->centroid_y = k.cy;
  c->equivalent_diameter_px = k.diameter;
  return ASFYOLO_OK;
}

asfyolo_status asfyolo_result_polygon(const asfyolo_result* r, int64_t i, float* xy, int64_t capacity, int64_t* n) {
  if (!r || !n) return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "result or n_points: NULL");
  if (i < 0 || i >= static_cast<int64_t>(r->out.cells.size()))
    return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "index " + std::to_string(i) + " out of range");
  try {
    std::vector<float> p = asfyolo::outline(r->out.labels.data(), r->out.width, r->out.cells[i].win,
                                            static_cast<uint32_t>(i + 1));
    *n = static_cast<int64_t>(p.size() / 2);
    if (!xy) return ASFYOLO_OK;
    if (capacity < *n)
      return fail(nullptr, ASFYOLO_ERR_ARGUMENT,
                  "capacity " + std::to_string(capacity) + " < " + std::to_string(*n) + " points");
    std::memcpy(xy, p.data(), p.size() * sizeof(float));
    return ASFYOLO_OK;
  } catch (...) {
    return fail(nullptr, ASFYOLO_ERR_MEMORY, "out of memory while tracing an outline");
  }
}

asfyolo_status asfyolo_result_timing(const asfyolo_result* r, asfyolo_timing* t) {
  if (!r || !t) return fail(nullptr, ASFYOLO_ERR_ARGUMENT, "result or out: NULL");
  t->read_ms = r->out.read_ms;
  t->preprocess_ms = r->out.preprocess_ms;
  t->inference_ms = r->out.inference_ms;
  t->postprocess_ms = r->out.postprocess_ms;
  t->total_ms = r->out.total_ms;
  return ASFYOLO_OK;
}

}  // extern "C"
