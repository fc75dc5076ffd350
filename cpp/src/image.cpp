// Frame validation, RGB conversion and resizing (image.hpp).
#include "image.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>

#include "asfyolo.h"

namespace asfyolo {

int bytes_per_pixel(int format) {
  switch (format) {
    case ASFYOLO_GRAY8: return 1;
    case ASFYOLO_GRAY16: return 2;
    case ASFYOLO_RGB8:
    case ASFYOLO_BGR8: return 3;
    default: return 0;
  }
}

bool check_frame(const void* data, int64_t width, int64_t height, int64_t stride, int format, std::string* err) {
  int bpp = bytes_per_pixel(format);
  if (bpp == 0) {
    *err = "image.format " + std::to_string(format) + ": expected ASFYOLO_GRAY8, GRAY16, RGB8 or BGR8";
    return false;
  }
  if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide || width * height > kMaxPixels) {
    *err = "image size " + std::to_string(width) + "x" + std::to_string(height) +
           ": expected 1.." + std::to_string(kMaxSide) + " px per side and at most 2^30 px";
    return false;
  }
  if (stride < width * bpp) {
    *err = "image.stride_bytes " + std::to_string(stride) + " is smaller than a row (" + std::to_string(width) +
           " px x " + std::to_string(bpp) + " bytes)";
    return false;
  }
  if (stride > (int64_t(1) << 40)) {
    *err = "image.stride_bytes " + std::to_string(stride) + ": implausibly large (> 2^40)";
    return false;
  }
  if (!data) {
    *err = "image.data is NULL";
    return false;
  }
  return true;
}

namespace {

// numpy.percentile(values, q) (linear) of the 16-bit histogram `hist` holding n values.
double percentile16(const std::vector<int64_t>& hist, int64_t n, double q) {
  double vi = (q / 100.0) * static_cast<double>(n - 1);
  int64_t lo_i = static_cast<int64_t>(std::floor(vi));
  int64_t hi_i = std::min(lo_i + 1, n - 1);
  double t = vi - static_cast<double>(lo_i);
  auto kth = [&](int64_t k) {  // value of the k-th smallest (0-based)
    int64_t seen = 0;
    for (int v = 0; v < 65536; ++v) {
      seen += hist[v];
      if (seen > k) return static_cast<double>(v);
    }
    return 65535.0;
  };
  double a = kth(lo_i), b = kth(hi_i), d = b - a;
  return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

}  // namespace

void to_rgb8(const void* data, int width, int height, int64_t stride, int format, Rgb8* out) {
  out->width = width;
  out->height = height;
  out->px.resize(static_cast<size_t>(width) * height * 3);
  const uint8_t* base = static_cast<const uint8_t*>(data);
  uint8_t* dst = out->px.data();
  if (format == ASFYOLO_GRAY16) {
    std::vector<int64_t> hist(65536, 0);
    for (int y = 0; y < height; ++y) {
      const uint8_t* row = base + stride * y;
      for (int x = 0; x < width; ++x) {
        uint16_t v;
        std::memcpy(&v, row + 2 * x, 2);  // rows of a caller's buffer need not be 2-byte aligned
        ++hist[v];
      }
    }
    int64_t n = int64_t(width) * height;
    double lo = percentile16(hist, n, 0.1), hi = percentile16(hist, n, 99.9);
    std::vector<uint8_t> lut(65536);
    float flo = static_cast<float>(lo), gain = hi > lo ? static_cast<float>(255.0 / (hi - lo)) : 0.0f;
    for (int v = 0; v < 65536; ++v) {
      float s = hi > lo ? (static_cast<float>(v) - flo) * gain : 0.0f;
      s = s + 0.5f;
      lut[v] = static_cast<uint8_t>(s <= 0.0f ? 0.0f : (s >= 255.0f ? 255.0f : s));
    }
    for (int y = 0; y < height; ++y) {
      const uint8_t* row = base + stride * y;
      uint8_t* d = dst + static_cast<size_t>(y) * width * 3;
      for (int x = 0; x < width; ++x) {
        uint16_t v;
        std::memcpy(&v, row + 2 * x, 2);
        d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = lut[v];
      }
    }
    return;
  }
  for (int y = 0; y < height; ++y) {
    const uint8_t* row = base + stride * y;
    uint8_t* d = dst + static_cast<size_t>(y) * width * 3;
    if (format == ASFYOLO_GRAY8) {
      for (int x = 0; x < width; ++x) d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = row[x];
    } else if (format == ASFYOLO_RGB8) {
      std::memcpy(d, row, static_cast<size_t>(width) * 3);
    } else {  // BGR8
      for (int x = 0; x < width; ++x) {
        d[3 * x] = row[3 * x + 2];
        d[3 * x + 1] = row[3 * x + 1];
        d[3 * x + 2] = row[3 * x];
      }
    }
  }
}

namespace {

struct Lin {  // one output coordinate of OpenCV's uint8 bilinear resize
  int i0, i1;
  int a0, a1;  // 11-bit fixed-point weights
};

std::vector<Lin> linear_tab(int dst, int src) {
  double scale = 1.0 / (static_cast<double>(dst) / src);
  std::vector<Lin> t(dst);
  for (int d = 0; d < dst; ++d) {
    float f = static_cast<float>((d + 0.5) * scale - 0.5);
    int s = static_cast<int>(std::floor(f));
    f -= static_cast<float>(s);
    t[d].i0 = std::min(std::max(s, 0), src - 1);
    t[d].i1 = std::min(std::max(s + 1, 0), src - 1);
    t[d].a0 = static_cast<int>(std::nearbyint((1.0f - f) * 2048.0f));
    t[d].a1 = static_cast<int>(std::nearbyint(f * 2048.0f));
  }
  return t;
}

template <typename F>
void parallel_rows(int rows, int threads, F f) {
  int n = std::max(1, std::min(threads, rows / 64 + 1));
  if (n == 1) {
    f(0, rows);
    return;
  }
  // rows are split between threads; an allocation failure in one is rethrown on the caller's thread
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(n);
  for (int k = 0; k < n; ++k)
    pool.emplace_back([=, &f, &errors] {
      try {
        f(rows * k / n, rows * (k + 1) / n);
      } catch (...) {
        errors[k] = std::current_exception();
      }
    });
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

void resize_linear(const Rgb8& src, int width, int height, Rgb8* out, int threads) {
  std::vector<Lin> tx = linear_tab(width, src.width), ty = linear_tab(height, src.height);
  parallel_rows(height, threads, [&](int r0, int r1) {
    std::vector<int32_t> h0(static_cast<size_t>(width) * 3), h1(h0.size());
    int cached0 = -1, cached1 = -1;
    auto hrow = [&](int sy, std::vector<int32_t>* h) {
      const uint8_t* s = src.px.data() + static_cast<size_t>(sy) * src.width * 3;
      for (int x = 0; x < width; ++x)
        for (int c = 0; c < 3; ++c)
          (*h)[3 * x + c] = s[3 * tx[x].i0 + c] * tx[x].a0 + s[3 * tx[x].i1 + c] * tx[x].a1;
    };
    for (int y = r0; y < r1; ++y) {
      const Lin& ly = ty[y];
      if (cached0 != ly.i0) {
        if (cached1 == ly.i0) { std::swap(h0, h1); std::swap(cached0, cached1); }
        else { hrow(ly.i0, &h0); cached0 = ly.i0; }
      }
      if (cached1 != ly.i1) { hrow(ly.i1, &h1); cached1 = ly.i1; }
      uint8_t* d = out->px.data() + static_cast<size_t>(y) * width * 3;
      for (int x = 0; x < width * 3; ++x) {
        // OpenCV's SIMD vertical pass: 16-bit products' high halves, then (t + 2) >> 2
        int t = (((h0[x] >> 4) * ly.a0) >> 16) + (((h1[x] >> 4) * ly.a1) >> 16);
        int v = (t + 2) >> 2;
        d[x] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
      }
    }
  });
}

struct AreaW {
  int d, s;
  float w;
};

// OpenCV's computeResizeAreaTab: the source pixels of each output pixel and their area weights.
std::vector<AreaW> area_tab(int ssize, int dsize, double scale) {
  std::vector<AreaW> tab;
  for (int dx = 0; dx < dsize; ++dx) {
    double fsx1 = dx * scale, fsx2 = fsx1 + scale;
    double cell = std::min(scale, ssize - fsx1);
    int sx1 = static_cast<int>(std::ceil(fsx1)), sx2 = static_cast<int>(std::floor(fsx2));
    sx2 = std::min(sx2, ssize - 1);
    sx1 = std::min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) tab.push_back({dx, sx1 - 1, static_cast<float>((sx1 - fsx1) / cell)});
    for (int sx = sx1; sx < sx2; ++sx) tab.push_back({dx, sx, static_cast<float>(1.0 / cell)});
    if (fsx2 - sx2 > 1e-3)
      tab.push_back({dx, sx2, static_cast<float>(std::min(std::min(fsx2 - sx2, 1.0), cell) / cell)});
  }
  return tab;
}

void resize_area(const Rgb8& src, int width, int height, Rgb8* out) {
  std::vector<AreaW> xt = area_tab(src.width, width, static_cast<double>(src.width) / width);
  std::vector<AreaW> yt = area_tab(src.height, height, static_cast<double>(src.height) / height);
  std::vector<float> acc(static_cast<size_t>(width) * 3), row(acc.size());
  size_t k = 0;
  for (int dy = 0; dy < height; ++dy) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (; k < yt.size() && yt[k].d == dy; ++k) {
      const uint8_t* s = src.px.data() + static_cast<size_t>(yt[k].s) * src.width * 3;
      std::fill(row.begin(), row.end(), 0.0f);
      for (const AreaW& w : xt)
        for (int c = 0; c < 3; ++c) row[3 * w.d + c] += s[3 * w.s + c] * w.w;
      for (size_t i = 0; i < acc.size(); ++i) acc[i] += row[i] * yt[k].w;
    }
    uint8_t* d = out->px.data() + static_cast<size_t>(dy) * width * 3;
    for (size_t i = 0; i < acc.size(); ++i) {
      int v = static_cast<int>(std::nearbyint(acc[i]));
      d[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
  }
}

}  // namespace

void resize_rgb8(const Rgb8& src, int width, int height, Rgb8* out, int threads) {
  out->width = width;
  out->height = height;
  out->px.assign(static_cast<size_t>(width) * height * 3, 0);
  bool up = int64_t(width) * height > int64_t(src.width) * src.height;
  if (up)
    resize_linear(src, width, height, out, threads);
  else
    resize_area(src, width, height, out);
}

}  // namespace asfyolo
