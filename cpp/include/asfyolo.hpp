// asfyolo.hpp — a thin C++17 RAII layer over the C interface (asfyolo.h). Header-only: it calls only the C
// functions, so it works with any build of the library (no C++ ABI crosses the library boundary).
//
//   asfyolo::Segmenter seg("bundle/");
//   asfyolo::Result res = seg.segment({pixels, w, h, stride, ASFYOLO_GRAY16, 0.0, bytes});
//   const uint32_t* labels = res.labels();  for (int64_t i = 0; i < res.count(); ++i) res.cell(i);
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "asfyolo.h"

namespace asfyolo {

// Thrown by this header (never by the library itself): the status and the library's one-line message.
class Error : public std::runtime_error {
 public:
  Error(asfyolo_status s, const std::string& m) : std::runtime_error(m), status(s) {}
  asfyolo_status status;
};

class Result {
 public:
  explicit Result(asfyolo_result* r = nullptr) : r_(r) {}
  Result(Result&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  Result& operator=(Result&& o) noexcept {
    if (this != &o) {
      asfyolo_result_free(r_);
      r_ = std::exchange(o.r_, nullptr);
    }
    return *this;
  }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result() { asfyolo_result_free(r_); }

  int width() const { return asfyolo_result_width(r_); }
  int height() const { return asfyolo_result_height(r_); }
  int64_t count() const { return asfyolo_result_count(r_); }
  const uint32_t* labels() const { return asfyolo_result_labels(r_); }
  asfyolo_cell cell(int64_t i) const {
    asfyolo_cell c{};
    check(asfyolo_result_cell(r_, i, &c));
    return c;
  }
  std::vector<float> polygon(int64_t i) const {
    int64_t n = 0;
    check(asfyolo_result_polygon(r_, i, nullptr, 0, &n));
    std::vector<float> xy(static_cast<size_t>(2 * n));
    if (n) check(asfyolo_result_polygon(r_, i, xy.data(), n, &n));
    return xy;
  }
  asfyolo_timing timing() const {
    asfyolo_timing t{};
    check(asfyolo_result_timing(r_, &t));
    return t;
  }
  asfyolo_result* get() const { return r_; }

 private:
  static void check(asfyolo_status s) {
    if (s != ASFYOLO_OK) throw Error(s, asfyolo_last_error(nullptr));
  }
  asfyolo_result* r_;
};

class Segmenter {
 public:
  explicit Segmenter(const std::string& path, const asfyolo_options* options = nullptr) {
    asfyolo_status s = asfyolo_segmenter_open(path.c_str(), options, &seg_);
    if (s != ASFYOLO_OK) {
      std::string msg = asfyolo_last_error(seg_);
      asfyolo_segmenter_free(seg_);
      throw Error(s, msg);
    }
  }
  Segmenter(Segmenter&& o) noexcept : seg_(std::exchange(o.seg_, nullptr)) {}
  Segmenter& operator=(Segmenter&& o) noexcept {
    if (this != &o) {
      asfyolo_segmenter_free(seg_);
      seg_ = std::exchange(o.seg_, nullptr);
    }
    return *this;
  }
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;
  ~Segmenter() { asfyolo_segmenter_free(seg_); }

  // A segmenter sharing this one's compiled model, for another thread.
  Segmenter clone() const {
    asfyolo_segmenter* c = nullptr;
    asfyolo_status s = asfyolo_segmenter_clone(seg_, &c);
    if (s != ASFYOLO_OK) throw Error(s, asfyolo_last_error(seg_));
    return Segmenter(c);
  }
  Result segment(const asfyolo_image& image) {
    asfyolo_result* r = nullptr;
    asfyolo_status s = asfyolo_segment(seg_, &image, &r);
    if (s != ASFYOLO_OK) throw Error(s, asfyolo_last_error(seg_));
    return Result(r);
  }
  std::string info() const { return asfyolo_segmenter_info(seg_); }
  asfyolo_segmenter* get() const { return seg_; }

 private:
  explicit Segmenter(asfyolo_segmenter* s) : seg_(s) {}
  asfyolo_segmenter* seg_ = nullptr;
};

}  // namespace asfyolo
