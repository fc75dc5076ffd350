// Cell outlines along pixel edges, as asfyolo_rt.infer.polygons.mask_outline: directed boundary edges
// (interior on the right), chained into rings turning right at a vertex with two ways out (4-connectivity),
// the largest outer ring, collinear vertices dropped.
#include "polygon.hpp"

#include <algorithm>
#include <map>
#include <utility>

namespace asfyolo {
namespace {

struct Edge {
  int x0, y0, x1, y1;
};

double ring_area(const std::vector<std::pair<int, int>>& r) {
  double a = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const auto& p = r[i];
    const auto& q = r[(i + 1) % r.size()];
    a += static_cast<double>(p.first) * q.second - static_cast<double>(q.first) * p.second;
  }
  return a / 2;
}

}  // namespace

std::vector<float> outline(const uint32_t* labels, int64_t stride, const int win[4], uint32_t id) {
  const int w = win[2], h = win[3];
  auto in = [&](int x, int y) {
    return x >= 0 && y >= 0 && x < w && y < h && labels[static_cast<int64_t>(win[1] + y) * stride + win[0] + x] == id;
  };
  std::vector<Edge> edges;
  // the reference's order: all top edges, then right, bottom, left (each row-major)
  for (int side = 0; side < 4; ++side)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        if (!in(x, y)) continue;
        if (side == 0 && !in(x, y - 1)) edges.push_back({x, y, x + 1, y});
        if (side == 1 && !in(x + 1, y)) edges.push_back({x + 1, y, x + 1, y + 1});
        if (side == 2 && !in(x, y + 1)) edges.push_back({x + 1, y + 1, x, y + 1});
        if (side == 3 && !in(x - 1, y)) edges.push_back({x, y + 1, x, y});
      }
  std::vector<float> out;
  if (edges.empty()) return out;
  std::map<std::pair<int, int>, std::vector<int>> by_start;
  for (size_t i = 0; i < edges.size(); ++i) by_start[{edges[i].x0, edges[i].y0}].push_back(static_cast<int>(i));
  std::vector<char> used(edges.size(), 0);
  std::vector<std::pair<int, int>> best;
  double best_area = 0;
  for (size_t first = 0; first < edges.size(); ++first) {
    if (used[first]) continue;
    std::vector<std::pair<int, int>> ring;
    int i = static_cast<int>(first);
    while (!used[i]) {
      used[i] = 1;
      const Edge& e = edges[i];
      ring.emplace_back(e.x0, e.y0);
      std::vector<int> opts;
      for (int j : by_start[{e.x1, e.y1}])
        if (!used[j]) opts.push_back(j);
      if (opts.empty()) break;
      if (opts.size() > 1) {
        const int dx = e.x1 - e.x0, dy = e.y1 - e.y0;
        std::stable_sort(opts.begin(), opts.end(), [&](int a, int b) {
          int ka = -(dx * (edges[a].y1 - e.y1) - dy * (edges[a].x1 - e.x1));
          int kb = -(dx * (edges[b].y1 - e.y1) - dy * (edges[b].x1 - e.x1));
          return ka < kb;
        });
      }
      i = opts[0];
    }
    if (ring.size() < 4) continue;
    double a = ring_area(ring);
    if (a > best_area) {
      best_area = a;
      best = ring;
    }
  }
  const size_t n = best.size();
  for (size_t k = 0; k < n; ++k) {
    const auto& p = best[(k + n - 1) % n];
    const auto& c = best[k];
    const auto& q = best[(k + 1) % n];
    long cross = static_cast<long>(c.first - p.first) * (q.second - c.second) -
                 static_cast<long>(c.second - p.second) * (q.first - c.first);
    if (cross == 0) continue;
    out.push_back(static_cast<float>(c.first + win[0]));
    out.push_back(static_cast<float>(c.second + win[1]));
  }
  return out;
}

}  // namespace asfyolo
