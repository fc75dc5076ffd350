// Fuzz of the image arguments of asfyolo_segment (run under AddressSanitizer + UBSan in the asan build):
// random sizes, strides, formats, pixel sizes and buffer lengths, many of them invalid. Every call must
// return a status (never crash or read outside the buffer it was given), and a valid one must succeed.
//   fuzz_image [ITERATIONS] [SEED]
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <random>
#include <vector>

#include "asfyolo.h"
#include "capi_internal.hpp"
#include "fake_backend.hpp"

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 300;
  std::mt19937_64 rng(argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 12345);
  asfyolo_options o;
  asfyolo_options_init(&o);
  o.tile_size = 64;
  o.tile_overlap = 16;
  asfyolo_segmenter* seg = nullptr;
  if (asfyolo::open_with_backend(asfyolo_test::make_fake({0, 0, 0, 2, false}), asfyolo_test::fake_info(1.0),
                                 "fake.onnx", &o, &seg) != ASFYOLO_OK) {
    std::fprintf(stderr, "cannot open the fake segmenter: %s\n", asfyolo_last_error(seg));
    return 1;
  }
  auto pick = [&](std::initializer_list<int64_t> v) { return *(v.begin() + rng() % v.size()); };
  auto uni = [&](int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(rng() % uint64_t(hi - lo + 1)); };
  int ok = 0, refused = 0, bad = 0;
  for (int i = 0; i < iters; ++i) {
    // a valid frame: any size, format and row padding, its buffer exactly as long as the library may read
    int64_t w = uni(1, 150), h = uni(1, 120);
    int fmt = static_cast<int>(uni(0, 3));
    double px = pick({0, 0, 1}) * 0.325;
    const int bpp = fmt == 1 ? 2 : (fmt >= 2 ? 3 : 1);
    int64_t row = w * bpp, stride = row + uni(0, 9), need = (h - 1) * stride + row, declared = pick({0, 1}) ? need : 0;
    bool null_data = false, valid = true;
    // then, half of the time, one argument broken
    switch (rng() % 16) {
      case 0: w = pick({0, -1, -70000, 1 << 17}); valid = false; break;
      case 1: h = pick({0, -3, 1 << 17}); valid = false; break;
      case 2: fmt = static_cast<int>(pick({-1, 4, 99, 1 << 30})); valid = false; break;
      case 3: stride = row - uni(1, row); valid = false; break;                   // stride smaller than a row
      case 4: declared = need - uni(1, std::max<int64_t>(1, need)); valid = false; break;  // short buffer
      case 5: null_data = true; valid = false; break;
      case 6: px = pick({-1, 5000}); valid = false; break;
      case 7: stride = pick({-8, int64_t(1) << 50}); valid = false; break;
      default: break;
    }
    std::vector<uint8_t> buf(static_cast<size_t>(valid ? need : 64));
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    if (!valid && declared == 0) declared = static_cast<int64_t>(buf.size());  // what the caller really has
    asfyolo_image im{null_data ? nullptr : buf.data(), static_cast<int32_t>(w), static_cast<int32_t>(h), stride,
                     static_cast<asfyolo_pixel_format>(fmt), px, declared};
    asfyolo_result* r = nullptr;
    asfyolo_status s = asfyolo_segment(seg, &im, &r);
    if (s == ASFYOLO_OK) {
      ++ok;
      if (!valid || r == nullptr || asfyolo_result_width(r) != w || asfyolo_result_height(r) != h) ++bad;
      asfyolo_result_free(r);
    } else {
      ++refused;
      if (valid || r != nullptr || asfyolo_last_error(seg)[0] == '\0') ++bad;
    }
    if (bad) {
      std::fprintf(stderr, "call %d: w %lld h %lld fmt %d stride %lld declared %lld -> %d (%s)\n", i,
                   static_cast<long long>(w), static_cast<long long>(h), fmt, static_cast<long long>(stride),
                   static_cast<long long>(declared), s, asfyolo_last_error(seg));
      break;
    }
  }
  asfyolo_segmenter_free(seg);
  std::printf("%d calls: %d segmented, %d refused, %d wrong\n", iters, ok, refused, bad);
  return bad ? 1 : 0;
}
