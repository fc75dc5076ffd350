// Smoke driver of asfyolo::open_tensorrt, linked against a real TensorRT / TensorRT-RTX runtime library:
//   open_smoke ENGINE [DEVICE]
// prints "opened <name> batch=B input=HxW end2end=0|1 parallel=P", then runs one batch of grey (0.5) tiles
// from host memory and prints each output's name, shape and sum (exit 0), or the one-line error (exit 1).
//   open_smoke --host-frame
// passes a host buffer to download_device_frame, which must refuse it ("not CUDA device memory", exit 1).
// On a machine without a GPU it proves what can be proved there: the library loads, its version decodes to
// the version of the headers, and every failure before the GPU is reached is one clear line.
#include <cstdio>
#include <string>
#include <vector>

#include "../../backend.hpp"
#include "../device_frame.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::printf("usage: open_smoke ENGINE [DEVICE]\n");
    return 2;
  }
  if (std::string(argv[1]) == "--host-frame") {
    std::vector<unsigned char> frame(64 * 48), host;
    std::string why;
    bool ok = asfyolo::download_device_frame(frame.data(), 64, 64, 48, &host, &why);
    std::printf("%s\n", ok ? "downloaded" : why.c_str());
    return ok ? 0 : 1;
  }
  asfyolo::BackendOptions opt;
  opt.device = argc > 2 ? argv[2] : "cuda:0";
  std::string err;
  std::unique_ptr<asfyolo::Backend> backend = asfyolo::open_tensorrt(argv[1], "", opt, &err);
  if (!backend) {
    std::printf("%s\n", err.c_str());
    return 1;
  }
  std::printf("opened %s batch=%d input=%dx%d end2end=%d parallel=%d\n", backend->name(), backend->static_batch(),
              backend->input_height(), backend->input_width(), backend->end_to_end() ? 1 : 0, backend->parallel());
  int n = backend->static_batch() > 0 ? backend->static_batch() : 1;
  int h = backend->input_height() > 0 ? backend->input_height() : 640;
  int w = backend->input_width() > 0 ? backend->input_width() : 640;
  std::vector<float> tiles(static_cast<size_t>(n) * 3 * h * w, 0.5f);
  std::vector<asfyolo::Output> outputs;
  if (!backend->infer(tiles.data(), n, h, w, false, &outputs, &err)) {
    std::printf("%s\n", err.c_str());
    return 1;
  }
  for (const asfyolo::Output& out : outputs) {
    double sum = 0;
    for (float v : out.data) sum += v;
    std::string shape;
    for (int64_t d : out.shape) shape += (shape.empty() ? "" : "x") + std::to_string(d);
    std::printf("output %s %s sum=%.6g\n", out.name.c_str(), shape.c_str(), sum);
  }
  return 0;
}
