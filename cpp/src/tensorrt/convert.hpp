// Element conversions of the TensorRT backend: engine outputs of any dtype the exported graphs use (float,
// half, bfloat16, int32/int64 counts and classes, uint8/bool masks, int8) to the float32 the runtime reads,
// and float32 to half for engines whose input is FP16. Pure C++17 (no TensorRT, no CUDA): tested anywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace asfyolo {
namespace trt {

// The element types an engine tensor may have here (mapped from nvinfer1::DataType by the backend).
enum class Elem { kFloat, kHalf, kBFloat16, kInt32, kInt64, kInt8, kUInt8, kBool };

inline size_t elem_size(Elem e) {
  switch (e) {
    case Elem::kFloat: case Elem::kInt32: return 4;
    case Elem::kHalf: case Elem::kBFloat16: return 2;
    case Elem::kInt64: return 8;
    default: return 1;
  }
}

inline const char* elem_name(Elem e) {
  switch (e) {
    case Elem::kFloat: return "float32";
    case Elem::kHalf: return "float16";
    case Elem::kBFloat16: return "bfloat16";
    case Elem::kInt32: return "int32";
    case Elem::kInt64: return "int64";
    case Elem::kInt8: return "int8";
    case Elem::kUInt8: return "uint8";
    default: return "bool";
  }
}

// IEEE 754 binary16 -> binary32, exact for every input (subnormals, infinities and NaN included).
inline float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1Fu) {
    bits = sign | 0x7F800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);  // normal: rebias 15 -> 127
  } else if (man == 0) {
    bits = sign;  // +-0
  } else {  // subnormal half: normalise into a float
    uint32_t e = 113u;
    while ((man & 0x400u) == 0) {
      man <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((man & 0x3FFu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// bfloat16 -> float: the upper 16 bits of a float.
inline float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// float -> IEEE binary16, round to nearest even; overflow to +-inf, NaN kept NaN.
inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t exp = (x >> 23) & 0xFFu;
  uint32_t man = x & 0x7FFFFFu;
  if (exp == 0xFFu) return static_cast<uint16_t>(sign | 0x7C00u | (man != 0 ? 0x200u : 0u));
  int32_t e = static_cast<int32_t>(exp) - 127 + 15;
  if (e >= 0x1F) return static_cast<uint16_t>(sign | 0x7C00u);
  if (e <= 0) {  // subnormal half or zero
    if (e < -10) return sign;
    man |= 0x800000u;
    uint32_t shift = static_cast<uint32_t>(14 - e);
    uint32_t half_man = man >> shift;
    uint32_t rest = man & ((1u << shift) - 1u);
    uint32_t halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (half_man & 1u) != 0)) ++half_man;
    return static_cast<uint16_t>(sign | half_man);
  }
  uint32_t half = (static_cast<uint32_t>(e) << 10) | (man >> 13);
  uint32_t rest = man & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u) != 0)) ++half;  // may carry into the exponent: correct
  return static_cast<uint16_t>(sign | half);
}

namespace detail {
template <typename T>
inline float cast(T v) { return static_cast<float>(v); }

template <typename T, typename F>
inline void convert_each(const unsigned char* src, size_t count, float* dst, F f) {
  for (size_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, src + sizeof(T) * i, sizeof(T));
    dst[i] = f(v);
  }
}
}  // namespace detail

// `count` elements of type `e` at `src` (any alignment) -> float32 at `dst` (the two must not overlap).
inline void to_float(Elem e, const void* src, size_t count, float* dst) {
  const unsigned char* p = static_cast<const unsigned char*>(src);
  switch (e) {
    case Elem::kFloat: std::memcpy(dst, p, count * 4); break;
    case Elem::kHalf: detail::convert_each<uint16_t>(p, count, dst, half_to_float); break;
    case Elem::kBFloat16: detail::convert_each<uint16_t>(p, count, dst, bf16_to_float); break;
    case Elem::kInt32: detail::convert_each<int32_t>(p, count, dst, detail::cast<int32_t>); break;
    case Elem::kInt64: detail::convert_each<int64_t>(p, count, dst, detail::cast<int64_t>); break;
    case Elem::kInt8: detail::convert_each<int8_t>(p, count, dst, detail::cast<int8_t>); break;
    case Elem::kUInt8: detail::convert_each<uint8_t>(p, count, dst, detail::cast<uint8_t>); break;
    default: detail::convert_each<uint8_t>(p, count, dst, [](uint8_t v) { return v != 0 ? 1.0f : 0.0f; }); break;
  }
}

}  // namespace trt
}  // namespace asfyolo
