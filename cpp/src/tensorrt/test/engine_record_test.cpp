// Test driver of the TensorRT backend's pure-C++ parts (no TensorRT, no CUDA, no GPU needed):
//   engine_record_test selftest
//       element conversions (half/bfloat16/int -> float, float -> half), version decoding and device names;
//       prints "ok N checks" or the failed checks, exit 0/1;
//   engine_record_test check ENGINE RUNTIME VERSION CC [DEVICE_NAME]
//       reads ENGINE's sidecar (ENGINE.json) and checks it against a machine that runs RUNTIME ("TensorRT" or
//       "TensorRT-RTX") at VERSION ("10.3.0") on a GPU of compute capability CC ("8.7"); prints "compatible"
//       (exit 0), the incompatibility line (exit 1) or the sidecar error (exit 2).
// Built and run by tests/cpp/test_tensorrt_compile.py on sidecars written by the Python side.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "../convert.hpp"
#include "../engine_record.hpp"

namespace {

int g_checks = 0;
int g_failed = 0;

void expect(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

bool same_float(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

void test_half() {
  using asfyolo::trt::float_to_half;
  using asfyolo::trt::half_to_float;
  struct Case { uint16_t bits; float value; };
  const Case cases[] = {
      {0x0000, 0.0f}, {0x8000, -0.0f}, {0x3C00, 1.0f}, {0xC000, -2.0f}, {0x3555, 0.333251953125f},
      {0x7BFF, 65504.0f},                      // largest half
      {0x0400, 6.103515625e-05f},              // smallest normal
      {0x0001, 5.9604644775390625e-08f},       // smallest subnormal
      {0x03FF, 6.097555160522461e-05f},        // largest subnormal
      {0x7C00, INFINITY}, {0xFC00, -INFINITY},
  };
  for (const Case& c : cases) {
    expect(same_float(half_to_float(c.bits), c.value), "half_to_float(" + std::to_string(c.bits) + ")");
    expect(float_to_half(c.value) == c.bits, "float_to_half(" + std::to_string(c.value) + ")");
  }
  expect(std::isnan(half_to_float(0x7E00)), "half NaN -> float NaN");
  expect((float_to_half(NAN) & 0x7C00) == 0x7C00 && (float_to_half(NAN) & 0x3FF) != 0, "float NaN -> half NaN");
  expect(float_to_half(1e6f) == 0x7C00, "overflow -> +inf");
  expect(float_to_half(1e-9f) == 0x0000, "underflow -> +0");
  // Round to nearest even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 -> 1 (even mantissa).
  expect(float_to_half(1.0f + 0.00048828125f) == 0x3C00, "halfway rounds to even (down)");
  expect(float_to_half(1.0f + 3 * 0.00048828125f) == 0x3C02, "halfway rounds to even (up)");
  // Every half round-trips exactly through float.
  bool all = true;
  for (uint32_t b = 0; b < 0x10000; ++b) {
    uint16_t h = static_cast<uint16_t>(b);
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0) continue;  // NaNs: payloads may differ
    all = all && float_to_half(half_to_float(h)) == h;
  }
  expect(all, "all 63488 non-NaN halves round-trip");
}

void test_to_float() {
  using asfyolo::trt::Elem;
  using asfyolo::trt::to_float;
  float out[4];
  const int32_t i32[] = {0, -3, 7, 2147483647};
  to_float(Elem::kInt32, i32, 4, out);
  expect(out[1] == -3.0f && out[2] == 7.0f && out[3] == 2147483648.0f, "int32 -> float");
  const int64_t i64[] = {5, -1, 300, 0};
  to_float(Elem::kInt64, i64, 4, out);
  expect(out[0] == 5.0f && out[1] == -1.0f && out[2] == 300.0f, "int64 -> float");
  const uint16_t bf[] = {0x3F80, 0xC040, 0x0000, 0x4120};
  to_float(Elem::kBFloat16, bf, 4, out);
  expect(out[0] == 1.0f && out[1] == -3.0f && out[2] == 0.0f && out[3] == 10.0f, "bfloat16 -> float");
  const uint8_t u8[] = {0, 1, 255, 2};
  to_float(Elem::kUInt8, u8, 4, out);
  expect(out[2] == 255.0f, "uint8 -> float");
  to_float(Elem::kBool, u8, 4, out);
  expect(out[0] == 0.0f && out[1] == 1.0f && out[2] == 1.0f && out[3] == 1.0f, "bool -> float");
  const int8_t i8[] = {-128, 127, 0, -1};
  to_float(Elem::kInt8, i8, 4, out);
  expect(out[0] == -128.0f && out[3] == -1.0f, "int8 -> float");
  const uint16_t h[] = {0x3C00, 0xBC00, 0x4000, 0x3800};
  to_float(Elem::kHalf, h, 4, out);
  expect(out[0] == 1.0f && out[1] == -1.0f && out[2] == 2.0f && out[3] == 0.5f, "half -> float");
  unsigned char unaligned[17] = {};
  const float f = 2.5f;
  std::memcpy(unaligned + 1, &f, 4);
  to_float(Elem::kFloat, unaligned + 1, 1, out);
  expect(out[0] == 2.5f, "float from an unaligned buffer");
}

void test_versions_and_devices() {
  using asfyolo::trt::decode_lib_version;
  using asfyolo::trt::parse_cuda_device;
  using asfyolo::trt::parse_version;
  int a = 0, b = 0, c = 0;
  decode_lib_version(8601, false, &a, &b, &c);
  expect(a == 8 && b == 6 && c == 1, "8.6.1 (narrow encoding)");
  decode_lib_version(100300, true, &a, &b, &c);
  expect(a == 10 && b == 3 && c == 0, "10.3.0 (wide encoding)");
  decode_lib_version(10701, true, &a, &b, &c);
  expect(a == 1 && b == 7 && c == 1, "TensorRT-RTX 1.7.1");
  expect(parse_version("10.3.0.30", &a, &b, &c) && a == 10 && b == 3 && c == 0, "parse 10.3.0.30");
  expect(parse_version("11", &a, &b, &c) && a == 11 && b == 0 && c == 0, "parse 11");
  expect(!parse_version("", &a, &b, &c) && !parse_version("ten", &a, &b, &c) && !parse_version("10.x", &a, &b, &c),
         "reject non-versions");
  int d = -1;
  expect(parse_cuda_device("", &d) && d == 0, "'' -> cuda:0");
  expect(parse_cuda_device("cuda:1", &d) && d == 1, "cuda:1");
  expect(parse_cuda_device("GPU.2", &d) && d == 2, "GPU.2");
  expect(parse_cuda_device("3", &d) && d == 3, "3");
  expect(!parse_cuda_device("CPU", &d) && !parse_cuda_device("cuda:x", &d) && !parse_cuda_device("cuda:", &d),
         "reject CPU, cuda:x, cuda:");
}

int check(int argc, char** argv) {
  if (argc < 6) {
    std::printf("usage: engine_record_test check ENGINE RUNTIME VERSION CC [DEVICE_NAME]\n");
    return 2;
  }
  asfyolo::trt::EngineRecord rec;
  std::string err;
  if (!asfyolo::trt::load_engine_record(argv[2], &rec, &err)) {
    std::printf("%s\n", err.c_str());
    return 2;
  }
  asfyolo::trt::RuntimeFacts facts;
  facts.runtime = argv[3];
  int cc_major = 0, cc_minor = 0, unused = 0;
  if (!asfyolo::trt::parse_version(argv[4], &facts.major, &facts.minor, &facts.patch) ||
      !asfyolo::trt::parse_version(argv[5], &cc_major, &cc_minor, &unused)) {
    std::printf("bad VERSION or CC\n");
    return 2;
  }
  facts.cc_major = cc_major;
  facts.cc_minor = cc_minor;
  if (argc > 6) facts.device_name = argv[6];
  std::string why = asfyolo::trt::check_compatibility(rec, facts);
  std::printf("%s\n", why.empty() ? "compatible" : why.c_str());
  return why.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "selftest") == 0) {
    test_half();
    test_to_float();
    test_versions_and_devices();
    std::printf("%s %d checks\n", g_failed == 0 ? "ok" : "FAILED", g_checks);
    return g_failed == 0 ? 0 : 1;
  }
  if (argc >= 2 && std::strcmp(argv[1], "check") == 0) return check(argc, argv);
  std::printf("usage: engine_record_test selftest | check ENGINE RUNTIME VERSION CC [DEVICE_NAME]\n");
  return 2;
}
