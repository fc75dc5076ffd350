// Frame validation and pixel work before the network: a caller's frame -> RGB uint8 (as
// asfyolo_rt.data.io.to_uint8_rgb), and the scale to the model's pixel scale (as OpenCV's resize, which the
// Python pipeline uses: bilinear up, area down; the bilinear one bit-exact with OpenCV 5's uint8 path).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asfyolo {

constexpr int64_t kMaxSide = 1 << 16;          // px per side
constexpr int64_t kMaxPixels = int64_t(1) << 30;  // px per frame (1 Gpx; the label map alone is 4 GiB)

struct Rgb8 {  // an interleaved RGB uint8 image, rows width * 3 bytes apart
  int width = 0, height = 0;
  std::vector<uint8_t> px;
};

// Bytes per pixel of an asfyolo_pixel_format value (0 for an unknown one).
int bytes_per_pixel(int format);

// Checks a caller's frame description; false + *err (naming the argument) when it cannot be read safely.
bool check_frame(const void* data, int64_t width, int64_t height, int64_t stride, int format, std::string* err);

// The frame as RGB uint8: grey replicated, BGR swapped, GRAY16 linearly mapped from its own 0.1..99.9
// percentiles to 0..255 (numpy's linear percentile, float32 arithmetic, +0.5 and truncation as Python).
void to_rgb8(const void* data, int width, int height, int64_t stride, int format, Rgb8* out);

// OpenCV's cv::resize of an RGB uint8 image: INTER_LINEAR when growing, INTER_AREA when shrinking.
void resize_rgb8(const Rgb8& src, int width, int height, Rgb8* out, int threads);

}  // namespace asfyolo
