// C++ tests of the runtime's units and its C interface, with the fake backend (no model needed): JSON and
// ModelInfo (an unknown major schema refused), tile plans against values the Python reference printed, NMS,
// the pipeline on bright squares (count, placement, invariance to tiles, stride and pixel format), errors.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "asfyolo.h"
#include "capi_internal.hpp"
#include "fake_backend.hpp"
#include "json.hpp"
#include "model_info.hpp"
#include "stages.hpp"

namespace {

int g_failed = 0, g_checks = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    ++g_checks;                                                            \
    if (!(cond)) {                                                         \
      ++g_failed;                                                          \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                      \
  } while (0)

using asfyolo_test::fake_info;
using asfyolo_test::FakeOptions;
using asfyolo_test::make_fake;

asfyolo_segmenter* open_fake(const FakeOptions& f, const asfyolo_options* o = nullptr, double scale = 1.0) {
  asfyolo_segmenter* seg = nullptr;
  asfyolo_status s = asfyolo::open_with_backend(make_fake(f), fake_info(scale), "fake.onnx", o, &seg);
  if (s != ASFYOLO_OK) std::fprintf(stderr, "open_fake: %s\n", asfyolo_last_error(seg));
  return seg;
}

// A w x h grey frame with bright 16x16 squares at the given top-left corners.
std::vector<uint8_t> squares(int w, int h, const std::vector<std::pair<int, int>>& at) {
  std::vector<uint8_t> px(size_t(w) * h, 10);
  for (auto [x0, y0] : at)
    for (int y = y0; y < y0 + 16; ++y)
      for (int x = x0; x < x0 + 16; ++x) px[size_t(y) * w + x] = 255;
  return px;
}

void test_json() {
  asfyolo::Json j;
  std::string err;
  CHECK(asfyolo::parse_json("{\"a\": [1, 2.5e1, \"x\\u00e9\"], \"b\": {\"c\": null, \"d\": true}}", &j, &err));
  CHECK(j.get("a") && j.get("a")->arr.size() == 3 && j.get("a")->arr[1].num == 25.0);
  CHECK(j.get("a")->arr[2].str == "x\xc3\xa9");
  CHECK(!asfyolo::parse_json("{\"a\": }", &j, &err) && err.find("byte") != std::string::npos);
  CHECK(!asfyolo::parse_json(std::string(1000, '['), &j, &err));  // depth-limited, no stack overflow
  CHECK(!asfyolo::parse_json("{} x", &j, &err));
}

void test_model_info() {
  asfyolo::ModelInfo m;
  std::string err;
  CHECK(asfyolo::parse_model_info(fake_info(1.5), "t", &m, &err));
  CHECK(m.model_scale == 1.5 && m.default_conf() == 0.9 && m.overlap_object_px() == 24.0);
  CHECK(asfyolo::overlap_for(207.0) == 208 && asfyolo::overlap_for(108.0) == 112 && asfyolo::overlap_for(-1) == 128);
  CHECK(!asfyolo::parse_model_info(fake_info(1.0, "2.0"), "new.json", &m, &err));
  CHECK(err.find("new.json") != std::string::npos && err.find("schema version 2.0") != std::string::npos);
  CHECK(asfyolo::parse_model_info(fake_info(1.0, "1.7"), "t", &m, &err));  // a newer minor: read
  CHECK(!asfyolo::parse_model_info(fake_info(0.0), "t", &m, &err) && err.find("model_scale") != std::string::npos);
  CHECK(!asfyolo::parse_model_info("{\"schema\": \"other\", \"schema_version\": \"1.0\"}", "t", &m, &err));
  CHECK(!asfyolo::parse_model_info("[1]", "t", &m, &err));
}

void test_plans() {
  asfyolo::Plan p;
  std::string err;
  // values printed by asfyolo_rt.runtime.tiles.plan_image
  CHECK(asfyolo::plan_image(2048, 2048, 1.5, 640, 640, 208, true, &p, &err));
  CHECK(p.hs == 3072 && p.tiles.size() == 49 && p.tiles[1].x0 == 405 && p.tiles[2].x0 == 811);
  CHECK(p.tiles[1].core[0] == 522.5 && p.tiles[1].core[2] == 928.0 && p.tiles[1].core[3] == 522.5);
  CHECK(asfyolo::plan_image(603, 1272, 1.5, 640, 640, 208, true, &p, &err));
  CHECK(p.hs == 904 && p.ws == 1908 && p.tiles.size() == 8 && p.tiles[3].x0 == 1268);
  CHECK(std::fabs(p.scale - 1.4995854063018244) < 1e-15);
  CHECK(asfyolo::plan_image(100, 50, 1.0, 640, 640, 128, false, &p, &err));
  CHECK(p.tiles.size() == 1 && p.tiles[0].h == 128 && p.tiles[0].w == 64);
  CHECK(asfyolo::plan_image(700, 500, 0.75, 320, 320, 112, true, &p, &err));
  CHECK(p.hs == 525 && p.ws == 375 && p.tiles.size() == 4 && p.tiles[1].x0 == 55 && p.tiles[2].y0 == 205);
  CHECK(p.tiles[3].core[0] == 187.5 && p.tiles[3].core[1] == 262.5);
  CHECK(!asfyolo::plan_image(1000, 1000, 1.0, 64, 64, 64, true, &p, &err) || p.tiles.size() > 0);
}

void test_fit_side() {
  // (side, tiles) printed by asfyolo_rt.runtime.tiles.fit_side for these lengths x overlaps
  const int overlaps[6] = {0, 64, 112, 208, 400, 600};
  struct Row { int length; int side_n[6][2]; };
  const Row table[] = {
      {1, {{32, 1}, {32, 1}, {32, 1}, {32, 1}, {32, 1}, {32, 1}}},
      {100, {{128, 1}, {128, 1}, {128, 1}, {128, 1}, {128, 1}, {128, 1}}},
      {320, {{320, 1}, {320, 1}, {320, 1}, {320, 1}, {320, 1}, {320, 1}}},
      {640, {{640, 1}, {640, 1}, {640, 1}, {640, 1}, {640, 1}, {640, 1}}},
      {905, {{928, 1}, {928, 1}, {928, 1}, {928, 1}, {928, 1}, {928, 1}}},
      {1024, {{1024, 1}, {1024, 1}, {1024, 1}, {1024, 1}, {1024, 1}, {1024, 1}}},
      {1025, {{544, 2}, {576, 2}, {576, 2}, {640, 2}, {832, 2}, {1024, 2}}},
      {1908, {{960, 2}, {992, 2}, {1024, 2}, {800, 3}, {928, 3}, {1024, 4}}},
      {3072, {{1024, 3}, {832, 4}, {864, 4}, {928, 4}, {960, 5}, {1024, 6}}},
      {4096, {{1024, 4}, {736, 6}, {928, 5}, {992, 5}, {1024, 6}, {1024, 9}}},
      {6144, {{1024, 6}, {832, 8}, {992, 7}, {960, 8}, {992, 10}, {1024, 14}}},
      {30000, {{864, 35}, {896, 36}, {992, 34}, {992, 38}, {1024, 48}, {1024, 70}}},
      {3000000, {{1024, 2930}, {1024, 3125}, {1024, 3290}, {1024, 3677}, {1024, 4808}, {1024, 7075}}},
  };
  for (const Row& r : table)
    for (int k = 0; k < 6; ++k) {
      asfyolo::FitSide f = asfyolo::fit_side(r.length, overlaps[k]);
      if (f.side != r.side_n[k][0] || f.tiles != r.side_n[k][1])
        std::fprintf(stderr, "fit_side(%d, %d) = (%d, %d), Python (%d, %d)\n", r.length, overlaps[k], f.side, f.tiles,
                     r.side_n[k][0], r.side_n[k][1]);
      CHECK(f.side == r.side_n[k][0] && f.tiles == r.side_n[k][1]);
    }
  // plans with the image's own tile (tile 0), as plan_image(tile_hw=None) printed them
  asfyolo::Plan p;
  std::string err;
  CHECK(asfyolo::plan_image(2048, 2048, 1.5, 0, 0, 208, false, &p, &err));
  CHECK(p.tiles.size() == 16 && p.tiles[0].h == 928 && p.tiles[0].w == 928 && p.tiles[1].x0 == 715);
  CHECK(p.tiles[1].core[0] == 821.5 && p.tiles[1].core[2] == 1536.0 && p.tiles[1].core[3] == 821.5);
  CHECK(asfyolo::plan_image(603, 1272, 1.5, 0, 0, 208, true, &p, &err));  // a fit tile is never static
  CHECK(p.tiles.size() == 3 && p.tiles[0].h == 928 && p.tiles[0].w == 800 && p.tiles[2].x0 == 1108);
  CHECK(p.tiles[1].core[0] == 677.0 && p.tiles[1].core[2] == 1231.0 && p.tiles[1].core[3] == 904.0);
  CHECK(asfyolo::plan_image(700, 500, 0.75, 0, 0, 112, false, &p, &err));
  CHECK(p.tiles.size() == 1 && p.tiles[0].h == 544 && p.tiles[0].w == 384);
}

void test_nms() {
  std::vector<std::array<float, 4>> b = {{0, 0, 10, 10}, {1, 1, 11, 11}, {20, 20, 30, 30}, {0, 0, 10, 10}};
  std::vector<float> s = {0.5f, 0.9f, 0.7f, 0.9f};
  std::vector<int> k = asfyolo::nms(b, s, 0.45f);
  // 1 (0.9, first of the tie) suppresses 0 and 3 (IoU 0.68 > 0.45); 2 is apart
  CHECK(k.size() == 2 && k[0] == 1 && k[1] == 2);
  CHECK(asfyolo::nms({}, {}, 0.5f).empty());
}

void test_pipeline() {
  const int w = 300, h = 200;
  std::vector<std::pair<int, int>> at = {{10, 10}, {60, 40}, {150, 150}, {250, 20}, {120, 90}};
  std::vector<uint8_t> px = squares(w, h, at);
  asfyolo_options o;
  asfyolo_options_init(&o);
  o.tile_size = 64;  // many tiles: ownership and stitching at work
  o.tile_overlap = 32;
  asfyolo_segmenter* seg = open_fake({0, 0, 0, 2, false}, &o);
  CHECK(seg != nullptr);
  if (!seg) return;
  asfyolo_image im{px.data(), w, h, w, ASFYOLO_GRAY8, 0.0, int64_t(px.size())};
  asfyolo_result* r = nullptr;
  CHECK(asfyolo_segment(seg, &im, &r) == ASFYOLO_OK);
  CHECK(asfyolo_result_count(r) == int64_t(at.size()));
  CHECK(asfyolo_result_tiles(r) > 4);
  std::vector<uint32_t> labels(asfyolo_result_labels(r), asfyolo_result_labels(r) + w * h);
  for (auto [x0, y0] : at) CHECK(labels[size_t(y0 + 8) * w + x0 + 8] != 0);
  CHECK(labels[0] == 0 && labels[size_t(h - 1) * w + w - 1] == 0);
  asfyolo_cell c;
  CHECK(asfyolo_result_cell(r, 0, &c) == ASFYOLO_OK && c.id == 1 && c.area_px > 100 && c.score > 0.9f);
  CHECK(asfyolo_result_cell(r, 99, &c) == ASFYOLO_ERR_ARGUMENT);
  int64_t n = 0;
  CHECK(asfyolo_result_polygon(r, 0, nullptr, 0, &n) == ASFYOLO_OK && n == 4);  // a square: four corners
  std::vector<float> xy(8);
  CHECK(asfyolo_result_polygon(r, 0, xy.data(), 4, &n) == ASFYOLO_OK);
  std::vector<uint32_t> copy(size_t(w + 3) * h);
  CHECK(asfyolo_result_copy_labels(r, copy.data(), (w + 3) * 4, int64_t(copy.size()) * 4) == ASFYOLO_OK);
  CHECK(copy[size_t(5) * (w + 3) + 7] == labels[size_t(5) * w + 7]);
  CHECK(asfyolo_result_copy_labels(r, copy.data(), w * 4, 100) == ASFYOLO_ERR_ARGUMENT);

  // the same frame as padded-stride RGB, BGR and one big tile: the same cells
  std::vector<uint8_t> rgb(size_t(w * 3 + 5) * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < 3; ++k) rgb[size_t(y) * (w * 3 + 5) + 3 * x + k] = px[size_t(y) * w + x];
  for (asfyolo_pixel_format f : {ASFYOLO_RGB8, ASFYOLO_BGR8}) {
    asfyolo_image im2{rgb.data(), w, h, w * 3 + 5, f, 0.0, int64_t(rgb.size())};
    asfyolo_result* r2 = nullptr;
    CHECK(asfyolo_segment(seg, &im2, &r2) == ASFYOLO_OK);
    CHECK(std::memcmp(asfyolo_result_labels(r2), labels.data(), labels.size() * 4) == 0);
    asfyolo_result_free(r2);
  }
  asfyolo_segmenter* clone = nullptr;
  CHECK(asfyolo_segmenter_clone(seg, &clone) == ASFYOLO_OK);
  asfyolo_result* r3 = nullptr;
  CHECK(asfyolo_segment(clone, &im, &r3) == ASFYOLO_OK && asfyolo_result_count(r3) == int64_t(at.size()));
  asfyolo_result_free(r3);
  asfyolo_segmenter_free(clone);
  asfyolo_segmenter* big = open_fake({0, 0, 0, 1, false});  // 640 tiles: one tile
  CHECK(asfyolo_segment(big, &im, &r3) == ASFYOLO_OK && asfyolo_result_count(r3) == int64_t(at.size()));
  CHECK(asfyolo_result_tiles(r3) == 1);
  asfyolo_result_free(r3);
  asfyolo_segmenter_free(big);
  asfyolo_result_free(r);
  asfyolo_segmenter_free(seg);
}

// No tile size: a backend that takes any tile shape gets the image's own (fit_tile: 4 tiles of 576 x 1024 for
// 1100 x 2000 at overlap 32), one that does not the default 640 (8 tiles); the same cells either way.
void test_fit_tiles() {
  const int w = 2000, h = 1100;
  std::vector<std::pair<int, int>> at = {{10, 10}, {990, 20}, {1010, 530}, {500, 540}, {1900, 1050}, {1200, 700}};
  std::vector<uint8_t> px = squares(w, h, at);
  asfyolo_image im{px.data(), w, h, w, ASFYOLO_GRAY8, 0.0, int64_t(px.size())};
  asfyolo_options o;
  asfyolo_options_init(&o);
  o.tile_overlap = 32;
  std::vector<uint8_t> first;
  for (bool per_image : {true, false}) {
    asfyolo_segmenter* seg = open_fake({0, 0, 0, 2, false, per_image}, &o);
    CHECK(seg != nullptr);
    if (!seg) return;
    const std::string info = asfyolo_segmenter_info(seg);
    CHECK(info.find(per_image ? "\"tile\": [0, 0]" : "\"tile\": [640, 640]") != std::string::npos);
    asfyolo_result* r = nullptr;
    CHECK(asfyolo_segment(seg, &im, &r) == ASFYOLO_OK);
    CHECK(asfyolo_result_tiles(r) == (per_image ? 4 : 8));
    CHECK(asfyolo_result_count(r) == int64_t(at.size()));
    std::vector<uint8_t> fg(size_t(w) * h);  // cells are numbered in tile order: compare the painted pixels
    for (size_t i = 0; i < fg.size(); ++i) fg[i] = asfyolo_result_labels(r)[i] != 0;
    if (first.empty()) first = fg;
    else CHECK(fg == first);
    asfyolo_result_free(r);
    asfyolo_segmenter_free(seg);
  }
}

void test_errors() {
  asfyolo_segmenter* seg = nullptr;
  CHECK(asfyolo_segmenter_open(nullptr, nullptr, &seg) == ASFYOLO_ERR_ARGUMENT);
  CHECK(std::string(asfyolo_last_error(seg)).find("path") != std::string::npos);
  asfyolo_segmenter_free(seg);
  CHECK(asfyolo_segmenter_open("/nonexistent/bundle", nullptr, &seg) == ASFYOLO_ERR_FILE);
  CHECK(std::string(asfyolo_last_error(seg)).find("/nonexistent/bundle") != std::string::npos);
  asfyolo_segmenter_free(seg);
  CHECK(asfyolo_segmenter_open("x", nullptr, nullptr) == ASFYOLO_ERR_ARGUMENT);
  CHECK(asfyolo::open_with_backend(make_fake({}), fake_info(1.0, "2.0"), "new.onnx", nullptr, &seg) ==
        ASFYOLO_ERR_MODEL_INFO);
  asfyolo_segmenter_free(seg);
  asfyolo_options o;
  asfyolo_options_init(&o);
  o.conf = 1.5;
  CHECK(asfyolo::open_with_backend(make_fake({}), fake_info(), "m", &o, &seg) == ASFYOLO_ERR_ARGUMENT);
  CHECK(std::string(asfyolo_last_error(seg)).find("options.conf") != std::string::npos);
  asfyolo_segmenter_free(seg);
  seg = open_fake({0, 0, 0, 1, true});
  std::vector<uint8_t> px = squares(64, 64, {{10, 10}});
  asfyolo_image im{px.data(), 64, 64, 64, ASFYOLO_GRAY8, 0.0, 0};
  asfyolo_result* r = nullptr;
  CHECK(asfyolo_segment(seg, &im, &r) == ASFYOLO_ERR_BACKEND && r == nullptr);
  CHECK(std::string(asfyolo_last_error(seg)).find("on purpose") != std::string::npos);
  CHECK(asfyolo_segment_device(seg, &im, &r) == ASFYOLO_ERR_UNSUPPORTED);
  CHECK(asfyolo_segment(nullptr, &im, &r) == ASFYOLO_ERR_ARGUMENT);
  asfyolo_segmenter_free(seg);
  // an empty frame runs no tile (stage 2c), so even the failing backend is not called
  std::vector<uint8_t> flat(64 * 64, 7);
  asfyolo_image im0{flat.data(), 64, 64, 64, ASFYOLO_GRAY8, 0.0, 0};
  seg = open_fake({0, 0, 0, 1, true});
  CHECK(asfyolo_segment(seg, &im0, &r) == ASFYOLO_OK && asfyolo_result_count(r) == 0);
  asfyolo_result_free(r);
  asfyolo_segmenter_free(seg);
  CHECK(asfyolo_abi_version() == ASFYOLO_ABI_VERSION && std::string(asfyolo_version()) == ASFYOLO_VERSION_STRING);
}

}  // namespace

int main() {
  test_json();
  test_model_info();
  test_plans();
  test_fit_side();
  test_nms();
  test_pipeline();
  test_fit_tiles();
  test_errors();
  std::printf("%d checks, %d failed\n", g_checks, g_failed);
  return g_failed ? 1 : 0;
}
