// asfyolo_segment BUNDLE_OR_MODEL IMAGE OUT_LABELS.tif [--cells OUT.csv] [--backend B] [--threads N]
//                 [--model-file NAME] [--conf C] [--iou I] [--min-visible V] [--tile-overlap PX] [--repeat N]
//
// The example program of the C runtime: an 8/16-bit TIFF or PNG in, a uint16 label TIFF (uint32 past
// 65,535 cells) and predict's cells.csv columns out, through the C interface (asfyolo.h) only.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "asfyolo.h"
#include "image_io.hpp"

namespace {

int usage(const char* msg) {
  if (msg) std::fprintf(stderr, "error: %s\n", msg);
  std::fprintf(stderr,
               "usage: asfyolo_segment BUNDLE_OR_MODEL IMAGE OUT_LABELS.tif [--cells OUT.csv] [--backend auto|openvino|"
               "tensorrt]\n       [--threads N] [--model-file NAME] [--conf C] [--iou I] [--min-visible V] "
               "[--tile-overlap PX] [--repeat N]\n");
  return 2;
}

// Python's str(round(v, digits)): shortest form, at least one decimal ("13.0").
std::string num(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s += "0";
  }
  return s;
}

std::string stem(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  size_t dot = name.find('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage(nullptr);
  const char *model = argv[1], *image = argv[2], *out_labels = argv[3], *cells = nullptr;
  int repeat = 1;
  asfyolo_options opt;
  asfyolo_options_init(&opt);
  for (int i = 4; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage(("option " + a + " needs a value").c_str());
    const char* v = argv[++i];
    char* end = nullptr;
    if (a == "--cells") cells = v;
    else if (a == "--backend") opt.backend = v;
    else if (a == "--model-file") opt.model_file = v;
    else if (a == "--precision") opt.precision = v;
    else if (a == "--threads") opt.threads = static_cast<int>(std::strtol(v, &end, 10));
    else if (a == "--repeat") repeat = static_cast<int>(std::strtol(v, &end, 10));
    else if (a == "--conf") opt.conf = std::strtod(v, &end);
    else if (a == "--iou") opt.iou = std::strtod(v, &end);
    else if (a == "--min-visible") opt.min_visible = std::strtod(v, &end);
    else if (a == "--tile-overlap") opt.tile_overlap = static_cast<int>(std::strtol(v, &end, 10));
    else return usage(("unknown option " + a).c_str());
    if (end && *end) return usage(("option " + a + ": not a number: " + v).c_str());
  }
  if (repeat < 1) return usage("--repeat: expected >= 1");
  asfyolo_tools::Raster r;
  std::string err;
  if (!asfyolo_tools::read_image(image, &r, &err)) {
    std::fprintf(stderr, "error: %s\n", err.c_str());
    return 1;
  }
  asfyolo_segmenter* seg = nullptr;
  if (asfyolo_segmenter_open(model, &opt, &seg) != ASFYOLO_OK) {
    std::fprintf(stderr, "error: %s\n", asfyolo_last_error(seg));
    asfyolo_segmenter_free(seg);
    return 1;
  }
  asfyolo_image im;
  im.data = r.data.data();
  im.width = r.width;
  im.height = r.height;
  im.stride_bytes = static_cast<int64_t>(r.width) * r.channels * r.bits / 8;
  im.format = r.channels == 3 ? ASFYOLO_RGB8 : (r.bits == 16 ? ASFYOLO_GRAY16 : ASFYOLO_GRAY8);
  im.pixel_size_um = 0.0;
  im.data_bytes = static_cast<int64_t>(r.data.size());
  if (r.channels == 3 && r.bits == 16) {  // 16-bit RGB: the example takes its high bytes
    std::fprintf(stderr, "error: %s: 16-bit RGB is not supported by the example; save it as 8-bit RGB\n", image);
    asfyolo_segmenter_free(seg);
    return 1;
  }
  asfyolo_result* res = nullptr;
  for (int k = 0; k < repeat; ++k) {
    asfyolo_result_free(res);
    res = nullptr;
    if (asfyolo_segment(seg, &im, &res) != ASFYOLO_OK) {
      std::fprintf(stderr, "error: %s\n", asfyolo_last_error(seg));
      asfyolo_segmenter_free(seg);
      return 1;
    }
    asfyolo_timing t;
    asfyolo_result_timing(res, &t);
    std::fprintf(stderr, "%s: %lld cells, %d tiles, %.1f ms (read %.1f, preprocess %.1f, inference %.1f, "
                 "postprocess %.1f)\n", image, static_cast<long long>(asfyolo_result_count(res)),
                 asfyolo_result_tiles(res), t.total_ms, t.read_ms, t.preprocess_ms, t.inference_ms, t.postprocess_ms);
  }
  const int64_t n = asfyolo_result_count(res);
  int rc = 0;
  if (!asfyolo_tools::write_label_tiff(out_labels, asfyolo_result_labels(res), asfyolo_result_width(res),
                                       asfyolo_result_height(res), n > 65535, &err)) {
    std::fprintf(stderr, "error: %s\n", err.c_str());
    rc = 1;
  }
  if (rc == 0 && cells) {
    FILE* f = std::fopen(cells, "w");
    if (!f) {
      std::fprintf(stderr, "error: %s: cannot write\n", cells);
      rc = 1;
    } else {
      std::fprintf(f, "image,plane,t,z,id,class,score,x1,y1,x2,y2,area_px,centroid_x,centroid_y,"
                      "equivalent_diameter_px\n");
      const std::string name = stem(image);
      for (int64_t i = 0; i < n; ++i) {
        asfyolo_cell c;
        asfyolo_result_cell(res, i, &c);
        std::fprintf(f, "%s,,,,%u,%d,%s,%s,%s,%s,%s,%lld,%s,%s,%s\n", name.c_str(), c.id, c.class_id,
                     num(c.score, 5).c_str(), num(c.x1, 2).c_str(), num(c.y1, 2).c_str(), num(c.x2, 2).c_str(),
                     num(c.y2, 2).c_str(), static_cast<long long>(c.area_px),
                     c.area_px ? num(c.centroid_x, 2).c_str() : "", c.area_px ? num(c.centroid_y, 2).c_str() : "",
                     num(c.equivalent_diameter_px, 3).c_str());
      }
      if (std::fclose(f) != 0) rc = 1;
    }
  }
  asfyolo_result_free(res);
  asfyolo_segmenter_free(seg);
  return rc;
}
