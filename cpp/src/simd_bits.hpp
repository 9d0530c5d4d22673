// 32-bit integer lanes beside Wide<float> and Scalar<float>: what the compact-state codec
// (state_codec.hpp) needs to hash, round and pack in registers, with the same lane count as the
// float type it serves. Integer operations are exact, so every ISA gives the same bits; SSE2
// lacks a 32-bit multiply, unsigned max and narrowing stores, which are built from SSE2 here.
// Included once per ISA translation unit after simd.hpp; everything has internal linkage.
#pragma once

#include <cstddef>
#include <cstdint>

#include "simd.hpp"

// The codec's per-vector helpers sit inside the kernel's loop: a call there spills the vector
// registers, so they are inlined even where the compiler's budget says otherwise.
#if defined(__GNUC__)
#define RMSPROP_INLINE __attribute__((always_inline)) inline
#define RMSPROP_NOINLINE __attribute__((noinline))
#else
#define RMSPROP_INLINE inline
#define RMSPROP_NOINLINE
#endif

namespace rmsprop {
namespace detail {
namespace RMSPROP_ISA_NS {
namespace {

template <class V>
struct Bits;

// One lane: plain integers.
template <>
struct Bits<Scalar<float>> {
  std::uint32_t value;
  static Bits broadcast(std::uint32_t x) { return {x}; }
  static Bits lane_index() { return {0}; }
  static Bits of(Scalar<float> v) { return {bits_of(v.value)}; }
  Scalar<float> as_float() const { return {float_of(value)}; }
  static Bits load(const std::uint32_t* p) { return {*p}; }
  void store(std::uint32_t* p) const { *p = value; }
  static Bits load_bytes(const std::uint8_t* p) { return {*p}; }
  // Lanes in [0, 2^31) to bytes, saturating at 255 (every ISA agrees only on that range).
  void store_bytes_saturated(std::uint8_t* p) const {
    *p = static_cast<std::uint8_t>(value > 255u ? 255u : value);
  }
  friend Bits operator+(Bits a, Bits b) { return {a.value + b.value}; }
  friend Bits operator-(Bits a, Bits b) { return {a.value - b.value}; }
  friend Bits operator^(Bits a, Bits b) { return {a.value ^ b.value}; }
  friend Bits operator&(Bits a, Bits b) { return {a.value & b.value}; }
  friend Bits operator*(Bits a, Bits b) { return {a.value * b.value}; }
  template <int kShift>
  Bits shr() const { return {value >> kShift}; }
  template <int kShift>
  Bits shl() const { return {value << kShift}; }
  friend Bits max_unsigned(Bits a, Bits b) { return {a.value > b.value ? a.value : b.value}; }
  // max(0, x) with x read as signed.
  friend Bits max_signed_zero(Bits a) {
    return {static_cast<std::int32_t>(a.value) < 0 ? 0u : a.value};
  }
  std::uint32_t max_lane() const { return value; }
};

#if defined(__AVX512F__)
template <>
struct Bits<Wide<float>> {
  __m512i value;
  static Bits broadcast(std::uint32_t x) { return {_mm512_set1_epi32(static_cast<int>(x))}; }
  static Bits lane_index() {
    return {_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)};
  }
  static Bits of(Wide<float> v) { return {_mm512_castps_si512(v.value)}; }
  Wide<float> as_float() const { return {_mm512_castsi512_ps(value)}; }
  static Bits load(const std::uint32_t* p) { return {_mm512_loadu_si512(p)}; }
  void store(std::uint32_t* p) const { _mm512_storeu_si512(p, value); }
  static Bits load_bytes(const std::uint8_t* p) {
    return {_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
  }
  void store_bytes_saturated(std::uint8_t* p) const {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtusepi32_epi8(value));
  }
  friend Bits operator+(Bits a, Bits b) { return {_mm512_add_epi32(a.value, b.value)}; }
  friend Bits operator-(Bits a, Bits b) { return {_mm512_sub_epi32(a.value, b.value)}; }
  friend Bits operator^(Bits a, Bits b) { return {_mm512_xor_si512(a.value, b.value)}; }
  friend Bits operator&(Bits a, Bits b) { return {_mm512_and_si512(a.value, b.value)}; }
  friend Bits operator*(Bits a, Bits b) { return {_mm512_mullo_epi32(a.value, b.value)}; }
  template <int kShift>
  Bits shr() const { return {_mm512_srli_epi32(value, kShift)}; }
  template <int kShift>
  Bits shl() const { return {_mm512_slli_epi32(value, kShift)}; }
  friend Bits max_unsigned(Bits a, Bits b) { return {_mm512_max_epu32(a.value, b.value)}; }
  friend Bits max_signed_zero(Bits a) {
    return {_mm512_max_epi32(a.value, _mm512_setzero_si512())};
  }
  std::uint32_t max_lane() const {
    return static_cast<std::uint32_t>(_mm512_reduce_max_epu32(value));
  }
};
#elif defined(__AVX2__)
template <>
struct Bits<Wide<float>> {
  __m256i value;
  static Bits broadcast(std::uint32_t x) { return {_mm256_set1_epi32(static_cast<int>(x))}; }
  static Bits lane_index() { return {_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)}; }
  static Bits of(Wide<float> v) { return {_mm256_castps_si256(v.value)}; }
  Wide<float> as_float() const { return {_mm256_castsi256_ps(value)}; }
  static Bits load(const std::uint32_t* p) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))};
  }
  void store(std::uint32_t* p) const {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), value);
  }
  static Bits load_bytes(const std::uint8_t* p) {
    return {_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))};
  }
  void store_bytes_saturated(std::uint8_t* p) const {
    // Per 128-bit half: dwords to unsigned-saturated words, then to unsigned-saturated bytes;
    // each half's first four bytes are its four lanes.
    const __m256i words = _mm256_packus_epi32(value, value);
    const __m256i bytes = _mm256_packus_epi16(words, words);
    const __m128i joined = _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes),
                                              _mm256_extracti128_si256(bytes, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), joined);
  }
  friend Bits operator+(Bits a, Bits b) { return {_mm256_add_epi32(a.value, b.value)}; }
  friend Bits operator-(Bits a, Bits b) { return {_mm256_sub_epi32(a.value, b.value)}; }
  friend Bits operator^(Bits a, Bits b) { return {_mm256_xor_si256(a.value, b.value)}; }
  friend Bits operator&(Bits a, Bits b) { return {_mm256_and_si256(a.value, b.value)}; }
  friend Bits operator*(Bits a, Bits b) { return {_mm256_mullo_epi32(a.value, b.value)}; }
  template <int kShift>
  Bits shr() const { return {_mm256_srli_epi32(value, kShift)}; }
  template <int kShift>
  Bits shl() const { return {_mm256_slli_epi32(value, kShift)}; }
  friend Bits max_unsigned(Bits a, Bits b) { return {_mm256_max_epu32(a.value, b.value)}; }
  friend Bits max_signed_zero(Bits a) {
    return {_mm256_max_epi32(a.value, _mm256_setzero_si256())};
  }
  std::uint32_t max_lane() const {
    alignas(32) std::uint32_t lanes[8];
    store(lanes);
    std::uint32_t m = lanes[0];
    for (int k = 1; k < 8; ++k) m = lanes[k] > m ? lanes[k] : m;
    return m;
  }
};
#elif defined(__SSE2__)
template <>
struct Bits<Wide<float>> {
  __m128i value;
  static Bits broadcast(std::uint32_t x) { return {_mm_set1_epi32(static_cast<int>(x))}; }
  static Bits lane_index() { return {_mm_setr_epi32(0, 1, 2, 3)}; }
  static Bits of(Wide<float> v) { return {_mm_castps_si128(v.value)}; }
  Wide<float> as_float() const { return {_mm_castsi128_ps(value)}; }
  static Bits load(const std::uint32_t* p) {
    return {_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))};
  }
  void store(std::uint32_t* p) const { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), value); }
  static Bits load_bytes(const std::uint8_t* p) {
    int word;
    std::memcpy(&word, p, sizeof word);
    const __m128i zero = _mm_setzero_si128();
    return {_mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(word), zero), zero)};
  }
  void store_bytes_saturated(std::uint8_t* p) const {
    // Lanes are below 2^31: signed saturation to words keeps them ordered, then unsigned
    // saturation to bytes clamps at 255.
    const __m128i words = _mm_packs_epi32(value, value);
    const int word = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
    std::memcpy(p, &word, sizeof word);
  }
  friend Bits operator+(Bits a, Bits b) { return {_mm_add_epi32(a.value, b.value)}; }
  friend Bits operator-(Bits a, Bits b) { return {_mm_sub_epi32(a.value, b.value)}; }
  friend Bits operator^(Bits a, Bits b) { return {_mm_xor_si128(a.value, b.value)}; }
  friend Bits operator&(Bits a, Bits b) { return {_mm_and_si128(a.value, b.value)}; }
  friend Bits operator*(Bits a, Bits b) {
    // Low halves of the even and the odd lanes' 64-bit products, interleaved back.
    const __m128i even = _mm_mul_epu32(a.value, b.value);
    const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(a.value, 32), _mm_srli_epi64(b.value, 32));
    return {_mm_unpacklo_epi32(_mm_shuffle_epi32(even, 0x08), _mm_shuffle_epi32(odd, 0x08))};
  }
  template <int kShift>
  Bits shr() const { return {_mm_srli_epi32(value, kShift)}; }
  template <int kShift>
  Bits shl() const { return {_mm_slli_epi32(value, kShift)}; }
  friend Bits max_unsigned(Bits a, Bits b) {
    const __m128i flip = _mm_set1_epi32(static_cast<int>(0x80000000u));
    const __m128i a_greater =
        _mm_cmpgt_epi32(_mm_xor_si128(a.value, flip), _mm_xor_si128(b.value, flip));
    return {_mm_or_si128(_mm_and_si128(a_greater, a.value), _mm_andnot_si128(a_greater, b.value))};
  }
  friend Bits max_signed_zero(Bits a) {
    return {_mm_andnot_si128(_mm_srai_epi32(a.value, 31), a.value)};
  }
  std::uint32_t max_lane() const {
    alignas(16) std::uint32_t lanes[4];
    store(lanes);
    std::uint32_t m = lanes[0];
    for (int k = 1; k < 4; ++k) m = lanes[k] > m ? lanes[k] : m;
    return m;
  }
};
#endif

// A translation unit whose float lanes and integer lanes differ (AVX without AVX2) must not
// compile rather than pair them wrongly.
static_assert(sizeof(Bits<Wide<float>>) == sizeof(Wide<float>),
              "integer lanes must match the float lanes");

}  // namespace
}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
