// Image files for the example program: TIFF (8/16-bit grey or RGB(A), strips, uncompressed / LZW / deflate,
// horizontal predictor) and PNG (libpng: 8/16-bit grey, grey+alpha, RGB, RGBA, palette) in; uint16/uint32
// label TIFF out. Multi-page files give their first page.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asfyolo_tools {

struct Raster {
  int width = 0, height = 0;
  int channels = 0;  // 1 (grey) or 3 (RGB; an alpha channel is dropped)
  int bits = 0;      // 8 or 16 (host byte order)
  std::vector<uint8_t> data;  // rows packed: width * channels * bits / 8 bytes each
};

bool read_image(const std::string& path, Raster* out, std::string* err);
// A label TIFF: uint16 when every value fits, else uint32 (deflate-free, one strip per 64 rows).
bool write_label_tiff(const std::string& path, const uint32_t* labels, int width, int height, bool wide,
                      std::string* err);

}  // namespace asfyolo_tools
