// A stand-in network for the C++ tests (no model, no runtime): every 8x8 block of a tile is an anchor whose
// objectness is high only for the top-left wholly bright block of a bright square, with the square's box; a
// prototype plane of ones and a coefficient of 10 fill each box. So a bright square becomes one cell.
#pragma once

#include <memory>
#include <string>

#include "backend.hpp"

namespace asfyolo_test {

struct FakeOptions {
  int height = 0, width = 0;  // 0: any multiple of 32
  int batch = 0;              // 0: dynamic
  int parallel = 1;
  bool fail = false;          // infer() reports an error
  bool per_image = false;     // Backend::per_image_tiles: any tile shape (each image's own fit_tile)
};

std::unique_ptr<asfyolo::Backend> make_fake(const FakeOptions& o);

// A ModelInfo JSON for the fake model (schema 1.1, model_scale `scale`, object size 24 px).
std::string fake_info(double scale = 1.0, const char* schema_version = "1.1");

}  // namespace asfyolo_test
