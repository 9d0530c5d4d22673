// Vector types the kernel is written over: Wide<T> (the widest registers the translation unit is
// compiled for) and Scalar<T> (one lane, for tails), with the same operations. The only file
// that includes <immintrin.h>. Every operation is a single correctly rounded IEEE operation
// (add, sub, mul, div, sqrt, max): no FMA, no approximate reciprocal, so Wide, Scalar and every
// ISA produce the same bits. Must be included once per ISA translation unit, after defining
// RMSPROP_ISA_NS; everything here has internal linkage.
#pragma once

#include <cstddef>

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#endif

#ifndef RMSPROP_ISA_NS
#error "define RMSPROP_ISA_NS (the ISA namespace) before including simd.hpp"
#endif

namespace rmsprop {
namespace detail {
namespace RMSPROP_ISA_NS {
namespace {

// max(0, x) that keeps NaN (and -0.0) as they are, matching x86 MAXPS(0, x): the result is x
// unless 0 > x. The vector versions below are that same instruction.
template <class T>
inline T max_with_zero(T x) {
  return T(0) > x ? T(0) : x;
}

template <class T>
struct Scalar {
  static constexpr std::size_t kLanes = 1;
  T value;
  static Scalar load(const T* p) { return {*p}; }
  static Scalar broadcast(T x) { return {x}; }
  void store(T* p) const { *p = value; }
  friend Scalar operator+(Scalar a, Scalar b) { return {a.value + b.value}; }
  friend Scalar operator-(Scalar a, Scalar b) { return {a.value - b.value}; }
  friend Scalar operator*(Scalar a, Scalar b) { return {a.value * b.value}; }
  friend Scalar operator/(Scalar a, Scalar b) { return {a.value / b.value}; }
  // __builtin_sqrt rather than std::sqrt: no shared inline function whose out-of-line copy the
  // linker could take from another ISA's object.
  friend Scalar sqrt(Scalar a) {
    if constexpr (sizeof(T) == 4) {
      return {__builtin_sqrtf(a.value)};
    } else {
      return {__builtin_sqrt(a.value)};
    }
  }
  friend Scalar max_with_zero(Scalar a) { return {max_with_zero(a.value)}; }
};

#define RMSPROP_DEFINE_WIDE(T, REG, LANES, PFX, SFX)                                           \
  template <>                                                                                 \
  struct Wide<T> {                                                                            \
    static constexpr std::size_t kLanes = LANES;                                              \
    REG value;                                                                                \
    static Wide load(const T* p) { return {PFX##_loadu_##SFX(p)}; }                            \
    static Wide broadcast(T x) { return {PFX##_set1_##SFX(x)}; }                               \
    void store(T* p) const { PFX##_storeu_##SFX(p, value); }                                   \
    friend Wide operator+(Wide a, Wide b) { return {PFX##_add_##SFX(a.value, b.value)}; }      \
    friend Wide operator-(Wide a, Wide b) { return {PFX##_sub_##SFX(a.value, b.value)}; }      \
    friend Wide operator*(Wide a, Wide b) { return {PFX##_mul_##SFX(a.value, b.value)}; }      \
    friend Wide operator/(Wide a, Wide b) { return {PFX##_div_##SFX(a.value, b.value)}; }      \
    friend Wide sqrt(Wide a) { return {PFX##_sqrt_##SFX(a.value)}; }                           \
    friend Wide max_with_zero(Wide a) { return {PFX##_max_##SFX(PFX##_setzero_##SFX(), a.value)}; } \
  };

#if defined(__AVX512F__)
template <class T>
struct Wide;

RMSPROP_DEFINE_WIDE(float, __m512, 16, _mm512, ps)
RMSPROP_DEFINE_WIDE(double, __m512d, 8, _mm512, pd)
#elif defined(__AVX__)
template <class T>
struct Wide;
RMSPROP_DEFINE_WIDE(float, __m256, 8, _mm256, ps)
RMSPROP_DEFINE_WIDE(double, __m256d, 4, _mm256, pd)
#elif defined(__SSE2__)
template <class T>
struct Wide;
RMSPROP_DEFINE_WIDE(float, __m128, 4, _mm, ps)
RMSPROP_DEFINE_WIDE(double, __m128d, 2, _mm, pd)
#else
// Non-x86 targets: the scalar type doubles as the wide one; the compiler may still vectorize.
template <class T>
using Wide = Scalar<T>;
#endif

#undef RMSPROP_DEFINE_WIDE

}  // namespace
}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
