// The fake backend of the C++ tests (fake_backend.hpp).
#include "fake_backend.hpp"

#include <cstdio>

namespace asfyolo_test {
namespace {

class Fake : public asfyolo::Backend {
 public:
  explicit Fake(const FakeOptions& o) : o_(o) {}
  const char* name() const override { return "fake"; }
  int input_height() const override { return o_.height; }
  int input_width() const override { return o_.width; }
  int static_batch() const override { return o_.batch; }
  bool end_to_end() const override { return false; }
  int parallel() const override { return o_.parallel; }
  bool per_image_tiles() const override { return o_.per_image; }
  bool infer(const float* x, int n, int h, int w, bool on_device, std::vector<asfyolo::Output>* outs,
             std::string* err) override {
    if (o_.fail || on_device) {
      *err = "fake: inference failed on purpose";
      return false;
    }
    if (h % 32 || w % 32 || (o_.height && h != o_.height) || (o_.batch && n != o_.batch)) {
      *err = "fake: bad input shape";
      return false;
    }
    const int nm = 2, nc = 1, row = 5 + nc + nm, gh = h / 8, gw = w / 8;
    asfyolo::Output pred{"pred", {n, int64_t(gh) * gw, row}, {}};
    asfyolo::Output protos{"protos", {n, nm, h / 4, w / 4}, {}};
    pred.data.assign(size_t(n) * gh * gw * row, 0.0f);
    protos.data.assign(size_t(n) * nm * (h / 4) * (w / 4), 1.0f);
    for (int b = 0; b < n; ++b) {
      const float* red = x + size_t(b) * 3 * h * w;
      auto full = [&](int gy, int gx) {  // an 8x8 block wholly bright
        if (gy < 0 || gx < 0) return false;
        for (int y = 0; y < 8; ++y)
          for (int xx = 0; xx < 8; ++xx)
            if (red[size_t(gy * 8 + y) * w + gx * 8 + xx] < 0.99f) return false;
        return true;
      };
      for (int gy = 0; gy < gh; ++gy)
        for (int gx = 0; gx < gw; ++gx) {
          float* p = pred.data.data() + (size_t(b) * gh * gw + size_t(gy) * gw + gx) * row;
          const bool anchor = full(gy, gx) && !full(gy, gx - 1) && !full(gy - 1, gx);
          // its box: the bright run through the block's top-left pixel, in both directions
          auto bright = [&](int y, int xx) { return red[size_t(y) * w + xx] >= 0.99f; };
          int x0 = gx * 8, x1 = gx * 8, y0 = gy * 8, y1 = gy * 8;
          while (anchor && x0 > 0 && bright(gy * 8, x0 - 1)) --x0;
          while (anchor && x1 < w && bright(gy * 8, x1)) ++x1;
          while (anchor && y0 > 0 && bright(y0 - 1, gx * 8)) --y0;
          while (anchor && y1 < h && bright(y1, gx * 8)) ++y1;
          p[0] = (x0 + x1) / 2.0f;
          p[1] = (y0 + y1) / 2.0f;
          p[2] = static_cast<float>(x1 - x0);
          p[3] = static_cast<float>(y1 - y0);
          p[4] = anchor ? 0.95f : 0.01f;
          p[5] = 1.0f;
          p[6] = 10.0f;  // coefficients of the two planes of ones: logit 10 inside the box
          p[7] = 0.0f;
        }
    }
    outs->clear();
    outs->push_back(std::move(pred));
    outs->push_back(std::move(protos));
    return true;
  }

 private:
  FakeOptions o_;
};

}  // namespace

std::unique_ptr<asfyolo::Backend> make_fake(const FakeOptions& o) { return std::make_unique<Fake>(o); }

std::string fake_info(double scale, const char* version) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"schema\": \"asfyolo-rt/model-info\", \"schema_version\": \"%s\", \"names\": {\"0\": \"cell\"}, "
                "\"format\": \"onnx\", \"precision\": \"fp32\", \"train_scale\": \"native\", \"model_scale\": %g, "
                "\"max_object_px\": 24.0, \"conf\": 0.9, \"iou\": 0.45, \"max_det\": 1000, \"mask_threshold\": 0.5, "
                "\"min_visible\": 0.5, \"future_key\": [1, 2, {\"x\": null}]}",
                version, scale);
  return buf;
}

}  // namespace asfyolo_test
