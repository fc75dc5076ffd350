// Cell outlines (polygon.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace asfyolo {

// x, y pairs (image px, pixel corners) of the largest outer ring of label `id` inside window win (x0, y0, w, h)
// of a label map with rows `stride` values apart; empty when the label has no pixel there.
std::vector<float> outline(const uint32_t* labels, int64_t stride, const int win[4], uint32_t id);

}  // namespace asfyolo
