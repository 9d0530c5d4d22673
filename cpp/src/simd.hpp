// Vector types the kernel is written over: Wide<T> (the widest registers the translation unit is
// compiled for) and Scalar<T> (one lane, for tails), with the same operations. The only file
// that includes <immintrin.h>. Every operation is a single correctly rounded IEEE operation
// (add, sub, mul, div, sqrt, min, max): no FMA, no approximate reciprocal, so Wide, Scalar and
// every ISA produce the same bits, NaN payloads included (see add_first_nan). Must be included
// once per ISA translation unit, after defining RMSPROP_ISA_NS; everything here has internal
// linkage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "rmsprop/rmsprop.hpp"

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

// min(limit, x) that keeps a NaN x, matching x86 MINPS(limit, x): the result is x unless
// limit < x. The vector versions below are that same instruction.
template <class T>
inline T min_keep_nan(T limit, T x) {
  return limit < x ? limit : x;
}

template <class V>
struct Tag {};

// Asks for the cache line `bytes` past p (a hint: never faults, whatever the address).
inline void prefetch_ahead(const void* p, std::size_t bytes) {
#if defined(__GNUC__)
  __builtin_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + bytes));
#else
  (void)p;
  (void)bytes;
#endif
}

// a + b where, when both are NaN, the result is a's NaN (quieted). x86 returns the first source
// operand's NaN, but addition is commutative to the compiler, which swaps the operands as
// register allocation suits it, differently in Wide and Scalar code and per ISA: two different
// NaNs then gave different bits. An asm statement pins the operand order; the instruction is
// the same one the compiler would have emitted.
#if defined(__AVX__) && defined(__GNUC__)
#define RMSPROP_ADD_FIRST_NAN(MNEMONIC, a, b)                                       \
  do {                                                                              \
    __asm__("v" MNEMONIC " %2, %1, %0" : "=v"(a) : "v"(a), "v"(b));                 \
  } while (0)
#elif defined(__SSE2__) && defined(__GNUC__)
#define RMSPROP_ADD_FIRST_NAN(MNEMONIC, a, b)                                       \
  do {                                                                              \
    __asm__(MNEMONIC " %1, %0" : "+x"(a) : "x"(b));                                 \
  } while (0)
#else
// Elsewhere the hardware's NaN rules differ anyway; bit-identity of NaN payloads is an x86
// promise.
#define RMSPROP_ADD_FIRST_NAN(MNEMONIC, a, b) ((a) = (a) + (b))
#endif

// ---------------------------------------------------------------------------------------------
// 16-bit conversions in software, bit for bit what F16C (VCVTPH2PS, VCVTPS2PH with round to
// nearest even) computes, so that the baseline kernel and every scalar tail agree with the
// vector bodies. bfloat16 is converted with integer arithmetic on every ISA: AVX512-BF16's
// VCVTNEPS2BF16 flushes denormals, which would make results depend on the CPU.

inline std::uint32_t bits_of(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

inline float float_of(std::uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  const std::uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return float_of(sign | bits_of(magnitude));
  }
  if (exponent == 0x1Fu) {
    // Inf, or NaN made quiet with its payload kept (as the hardware does).
    return float_of(sign | 0x7F800000u | (mantissa << 13) | (mantissa ? 0x00400000u : 0u));
  }
  return float_of(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline std::uint16_t float_to_half(float x) {
  const std::uint32_t b = bits_of(x);
  const auto sign = static_cast<std::uint16_t>((b >> 16) & 0x8000u);
  const std::uint32_t magnitude = b & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) {  // NaN: quiet, top payload bits kept
    return static_cast<std::uint16_t>(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));
  }
  if (magnitude >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 65520
  if (magnitude < 0x38800000u) {
    // Result subnormal or zero: scale to units of 2^-24 (exact) and let one float addition
    // round to an integer, to nearest even. 2^-14 * 2^24 = 2^10 lands on the smallest normal
    // half's bits, which is the right encoding.
    const float scaled = float_of(magnitude) * 16777216.0f;
    const std::uint32_t rounded = bits_of(scaled + 8388608.0f) - 0x4B000000u;
    return static_cast<std::uint16_t>(sign | rounded);
  }
  const std::uint32_t odd = (magnitude >> 13) & 1u;
  const std::uint32_t rebased = magnitude - (112u << 23) + 0xFFFu + odd;
  return static_cast<std::uint16_t>(sign | (rebased >> 13));
}

inline float bfloat16_to_float(std::uint16_t h) { return float_of(static_cast<std::uint32_t>(h) << 16); }

inline std::uint16_t float_to_bfloat16(float x) {
  const std::uint32_t b = bits_of(x);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((b >> 16) | 0x40u);
  return static_cast<std::uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

// Stochastic rounding: add 16 bits of noise below the kept bits, then truncate, so x rounds up
// with probability equal to its distance from the lower neighbour. Inf and NaN round as usual.
inline std::uint16_t float_to_bfloat16_stochastic(float x, std::uint32_t noise) {
  const std::uint32_t b = bits_of(x);
  if ((b & 0x7F800000u) == 0x7F800000u) return float_to_bfloat16(x);
  return static_cast<std::uint16_t>((b + (noise & 0xFFFFu)) >> 16);
}

template <class T>
struct Scalar {
  static constexpr std::size_t kLanes = 1;
  using value_type = T;
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
  friend Scalar min_keep_nan(Scalar limit, Scalar x) {
    return {min_keep_nan(limit.value, x.value)};
  }
  friend Scalar add_first_nan(Scalar a, Scalar b) {
    if constexpr (sizeof(T) == 4) {
      RMSPROP_ADD_FIRST_NAN("addss", a.value, b.value);
    } else {
      RMSPROP_ADD_FIRST_NAN("addsd", a.value, b.value);
    }
    return a;
  }
};

#define RMSPROP_DEFINE_WIDE(T, REG, LANES, PFX, SFX, ADD)                                      \
  template <>                                                                                 \
  struct Wide<T> {                                                                            \
    static constexpr std::size_t kLanes = LANES;                                              \
    using value_type = T;                                                                     \
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
    friend Wide min_keep_nan(Wide limit, Wide x) {                                            \
      return {PFX##_min_##SFX(limit.value, x.value)};                                         \
    }                                                                                         \
    friend Wide add_first_nan(Wide a, Wide b) {                                               \
      RMSPROP_ADD_FIRST_NAN(ADD, a.value, b.value);                                           \
      return a;                                                                               \
    }                                                                                         \
  };

#if defined(__AVX512F__)
template <class T>
struct Wide;

RMSPROP_DEFINE_WIDE(float, __m512, 16, _mm512, ps, "addps")
RMSPROP_DEFINE_WIDE(double, __m512d, 8, _mm512, pd, "addpd")
#elif defined(__AVX__)
template <class T>
struct Wide;
RMSPROP_DEFINE_WIDE(float, __m256, 8, _mm256, ps, "addps")
RMSPROP_DEFINE_WIDE(double, __m256d, 4, _mm256, pd, "addpd")
#elif defined(__SSE2__)
template <class T>
struct Wide;
RMSPROP_DEFINE_WIDE(float, __m128, 4, _mm, ps, "addps")
RMSPROP_DEFINE_WIDE(double, __m128d, 2, _mm, pd, "addpd")
#else
// Non-x86 targets: the scalar type doubles as the wide one; the compiler may still vectorize.
template <class T>
using Wide = Scalar<T>;
#endif

#undef RMSPROP_DEFINE_WIDE
#undef RMSPROP_ADD_FIRST_NAN

// ---------------------------------------------------------------------------------------------
// Loading and storing lanes from parameter storage. Same-type storage is a plain load/store;
// 16-bit storage converts on the way (math always runs in float).

template <class V>
inline V load_lanes(Tag<V>, const typename V::value_type* p) {
  return V::load(p);
}

template <class V>
inline void store_lanes(V v, typename V::value_type* p) {
  v.store(p);
}

inline Scalar<float> load_lanes(Tag<Scalar<float>>, const float16* p) {
  return {half_to_float(p->bits)};
}
inline Scalar<float> load_lanes(Tag<Scalar<float>>, const bfloat16* p) {
  return {bfloat16_to_float(p->bits)};
}
inline void store_lanes(Scalar<float> v, float16* p) { p->bits = float_to_half(v.value); }
inline void store_lanes(Scalar<float> v, bfloat16* p) { p->bits = float_to_bfloat16(v.value); }
inline void store_lanes_stochastic(Scalar<float> v, bfloat16* p, std::uint32_t noise) {
  p->bits = float_to_bfloat16_stochastic(v.value, noise);
}
inline void store_lanes_stochastic(Scalar<float> v, bfloat16* p, const std::uint32_t* noise) {
  p->bits = float_to_bfloat16_stochastic(v.value, noise[0]);
}

#if defined(__AVX512F__)
inline Wide<float> load_lanes(Tag<Wide<float>>, const float16* p) {
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
inline void store_lanes(Wide<float> v, float16* p) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_cvtps_ph(v.value, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline Wide<float> load_lanes(Tag<Wide<float>>, const bfloat16* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(wide, 16))};
}
inline __m512i bfloat16_nearest(Wide<float> v) {
  const __m512i b = _mm512_castps_si512(v.value);
  const __m512i high = _mm512_srli_epi32(b, 16);
  const __m512i odd = _mm512_and_si512(high, _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v.value, v.value, _CMP_UNORD_Q);
  return _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(high, _mm512_set1_epi32(0x40)));
}
inline void store_lanes(Wide<float> v, bfloat16* p) {
  // bfloat16_nearest without its NaN blend unless a lane is NaN (rare; the rounding of the
  // other lanes is the same).
  const __m512i b = _mm512_castps_si512(v.value);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
  if (_mm512_cmp_ps_mask(v.value, v.value, _CMP_UNORD_Q)) rounded = bfloat16_nearest(v);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(rounded));
}
// `noise` holds 16 random bits per lane (below 2^16). Inf and NaN, rare, round to nearest:
// that conversion is only computed when a lane needs it.
inline void store_lanes_stochastic(Wide<float> v, bfloat16* p, __m512i noise) {
  const __m512i b = _mm512_castps_si512(v.value);
  const __m512i exponent = _mm512_set1_epi32(0x7F800000);
  const __mmask16 special =
      _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, exponent), exponent);
  __m512i result = _mm512_srli_epi32(_mm512_add_epi32(b, noise), 16);
  if (special) result = _mm512_mask_blend_epi32(special, result, bfloat16_nearest(v));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(result));
}
inline void store_lanes_stochastic(Wide<float> v, bfloat16* p, const std::uint32_t* noise) {
  store_lanes_stochastic(
      v, p, _mm512_and_si512(_mm512_loadu_si512(noise), _mm512_set1_epi32(0xFFFF)));
}
#elif defined(__AVX2__)
inline Wide<float> load_lanes(Tag<Wide<float>>, const float16* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
inline void store_lanes(Wide<float> v, float16* p) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_cvtps_ph(v.value, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline Wide<float> load_lanes(Tag<Wide<float>>, const bfloat16* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(wide, 16))};
}
inline __m256i bfloat16_nearest(Wide<float> v) {
  const __m256i b = _mm256_castps_si256(v.value);
  const __m256i high = _mm256_srli_epi32(b, 16);
  const __m256i odd = _mm256_and_si256(high, _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v.value, v.value, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(rounded, _mm256_or_si256(high, _mm256_set1_epi32(0x40)), nan);
}
// Eight 32-bit lanes holding values < 2^16 to eight 16-bit values.
inline __m128i narrow_to_16(__m256i x) {
  const __m256i packed = _mm256_packus_epi32(x, x);  // per 128-bit half: a0..a3 a0..a3
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}
inline void store_lanes(Wide<float> v, bfloat16* p) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow_to_16(bfloat16_nearest(v)));
}
inline void store_lanes_stochastic(Wide<float> v, bfloat16* p, __m256i noise) {
  const __m256i b = _mm256_castps_si256(v.value);
  const __m256i exponent = _mm256_set1_epi32(0x7F800000);
  const __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(b, exponent), exponent);
  __m256i result = _mm256_srli_epi32(_mm256_add_epi32(b, noise), 16);
  if (!_mm256_testz_si256(special, special)) {
    result = _mm256_blendv_epi8(result, bfloat16_nearest(v), special);
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow_to_16(result));
}
inline void store_lanes_stochastic(Wide<float> v, bfloat16* p, const std::uint32_t* noise) {
  store_lanes_stochastic(
      v, p,
      _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(noise)),
                       _mm256_set1_epi32(0xFFFF)));
}
#elif defined(__SSE2__)
// SSE2 has no F16C: half conversions go lane by lane through the software routines above.
inline Wide<float> load_lanes(Tag<Wide<float>>, const float16* p) {
  return {_mm_setr_ps(half_to_float(p[0].bits), half_to_float(p[1].bits),
                      half_to_float(p[2].bits), half_to_float(p[3].bits))};
}
inline void store_lanes(Wide<float> v, float16* p) {
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, v.value);
  for (int k = 0; k < 4; ++k) p[k].bits = float_to_half(lanes[k]);
}
inline Wide<float> load_lanes(Tag<Wide<float>>, const bfloat16* p) {
  const __m128i halves = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return {_mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), halves))};
}
inline __m128i bfloat16_nearest(Wide<float> v) {
  const __m128i b = _mm_castps_si128(v.value);
  const __m128i high = _mm_srli_epi32(b, 16);
  const __m128i odd = _mm_and_si128(high, _mm_set1_epi32(1));
  const __m128i rounded =
      _mm_srli_epi32(_mm_add_epi32(b, _mm_add_epi32(odd, _mm_set1_epi32(0x7FFF))), 16);
  const __m128i nan = _mm_castps_si128(_mm_cmpunord_ps(v.value, v.value));
  const __m128i quiet = _mm_or_si128(high, _mm_set1_epi32(0x40));
  return _mm_or_si128(_mm_and_si128(nan, quiet), _mm_andnot_si128(nan, rounded));
}
// Four 32-bit lanes holding values < 2^16 to four 16-bit values: sign-extend so that the
// signed-saturating pack keeps the bit pattern.
inline void store_narrowed(__m128i x, bfloat16* p) {
  const __m128i signed16 = _mm_srai_epi32(_mm_slli_epi32(x, 16), 16);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi32(signed16, signed16));
}
inline void store_lanes(Wide<float> v, bfloat16* p) { store_narrowed(bfloat16_nearest(v), p); }
inline void store_lanes_stochastic(Wide<float> v, bfloat16* p, __m128i noise) {
  const __m128i b = _mm_castps_si128(v.value);
  const __m128i exponent = _mm_set1_epi32(0x7F800000);
  const __m128i special = _mm_cmpeq_epi32(_mm_and_si128(b, exponent), exponent);
  const __m128i stochastic = _mm_srli_epi32(_mm_add_epi32(b, noise), 16);
  const __m128i result = _mm_or_si128(_mm_and_si128(special, bfloat16_nearest(v)),
                                      _mm_andnot_si128(special, stochastic));
  store_narrowed(result, p);
}
inline void store_lanes_stochastic(Wide<float> v, bfloat16* p, const std::uint32_t* noise) {
  store_lanes_stochastic(v, p,
                         _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(noise)),
                                       _mm_set1_epi32(0xFFFF)));
}
#endif

}  // namespace
}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
