// What the C ABI (capi.cpp) is made of, for the C++ tests: a segmenter around any Backend (tests use a fake one).
#pragma once

#include <memory>
#include <string>

#include "asfyolo.h"
#include "pipeline.hpp"

struct asfyolo_segmenter {
  std::shared_ptr<asfyolo::Pipeline> pipe;  // shared by clones; null in an error-only handle
  std::string error;
  std::string info;  // asfyolo_segmenter_info's JSON
};

namespace asfyolo {

// A segmenter over `backend` with the ModelInfo JSON `info_json` and `options` (may be NULL): what
// asfyolo_segmenter_open does once it has opened a backend. Same error contract.
asfyolo_status open_with_backend(std::unique_ptr<Backend> backend, const std::string& info_json,
                                 const std::string& source, const asfyolo_options* options, asfyolo_segmenter** out);

}  // namespace asfyolo
