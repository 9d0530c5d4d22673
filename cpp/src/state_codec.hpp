// Compact optimizer state (SPEC §8): how the kernel reads and writes square_avg, grad_avg and
// momentum_buffer when they are stored in float, in bfloat16 or in 8 bits, and the 8-bit code.
// Included by kernel_impl.hpp once per ISA, after simd.hpp; everything has internal linkage.
// Must not contain the RMSProp update itself (kernel_impl.hpp), threading or allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernel.hpp"
#include "simd.hpp"

namespace rmsprop {
namespace detail {
namespace RMSPROP_ISA_NS {
namespace {

// State noise. Keys come from the package's mix64 (seed, tensor, step, and a salt apart from
// the params' own rounding noise); per element a 32-bit integer hash (lowbias32, two 32-bit
// multiplies: a quarter of mix64's cost in vector registers) of the key and the element's
// global index gives 16 bits for square_avg (low half) and 16 for momentum_buffer (high half);
// grad_avg takes the low half of a second hash under its own salt.
constexpr std::uint64_t kStateSalt = 0x73746174655F7631ull;    // "state_v1"
constexpr std::uint64_t kGradAvgSalt = 0x73746174655F6731ull;  // "state_g1"

// The 8-bit code of square_avg: r = v / scale, with scale the largest v of the block, is stored
// as a float with 5 exponent and 3 mantissa bits, code c standing for float_of((c + 761) << 20):
// c = 255 is exactly 1 (the block maximum), c = 0 is 1.125 * 2^-32. There is no zero code, so
// a stochastic rounding to 0 (and then a step g / eps) cannot happen.
constexpr std::uint32_t kCodeBias = 761;

inline std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Element e's hash under key: hash32(low(key) + low(e) * golden + high(e) * c2, xor high(key)).
inline std::uint32_t element_hash(std::uint64_t key, std::uint64_t e) {
  const std::uint32_t x = static_cast<std::uint32_t>(key) +
                          static_cast<std::uint32_t>(e) * 0x9E3779B9u +
                          static_cast<std::uint32_t>(e >> 32) * 0x85EBCA6Bu;
  return hash32(x ^ static_cast<std::uint32_t>(key >> 32));
}

// 16-bit noise words of the three buffers for one block (local index `base` first).
struct StateNoise {
  alignas(64) std::uint32_t square_avg_words[kEightBitBlock];
  alignas(64) std::uint32_t momentum_words[kEightBitBlock];
  alignas(64) std::uint32_t grad_avg_words[kEightBitBlock];
  std::uint64_t index_offset, key, grad_avg_key;
  bool momentum, centered;
  std::size_t base = 0;

  StateNoise(std::uint64_t rounding_key, std::uint64_t offset, bool has_momentum,
             bool is_centered)
      : index_offset(offset),
        key(mix64(rounding_key ^ kStateSalt)),
        grad_avg_key(mix64(rounding_key ^ kGradAvgSalt)),
        momentum(has_momentum),
        centered(is_centered) {}

  void fill(std::size_t local, std::size_t count) {
    const std::uint64_t first = index_offset + local;
    base = local;
    for (std::size_t k = 0; k < count; ++k) {
      const std::uint32_t h = element_hash(key, first + k);
      square_avg_words[k] = h & 0xFFFFu;
      momentum_words[k] = h >> 16;
    }
    if (centered) {
      for (std::size_t k = 0; k < count; ++k) {
        grad_avg_words[k] = element_hash(grad_avg_key, first + k) & 0xFFFFu;
      }
    }
  }
  const std::uint32_t* square_avg(std::size_t i) const { return square_avg_words + (i - base); }
  const std::uint32_t* momentum_buffer(std::size_t i) const { return momentum_words + (i - base); }
  const std::uint32_t* grad_avg(std::size_t i) const { return grad_avg_words + (i - base); }
};

// Float state in the compute type: plain loads and stores.
template <class T>
struct FloatState {
  T* square_avg;
  T* grad_avg;
  T* momentum_buffer;
  template <class V>
  V load_square_avg(std::size_t i) const { return V::load(square_avg + i); }
  template <class V>
  void store_square_avg(V x, std::size_t i) const { x.store(square_avg + i); }
  template <class V>
  V load_grad_avg(std::size_t i) const { return V::load(grad_avg + i); }
  template <class V>
  void store_grad_avg(V x, std::size_t i) const { x.store(grad_avg + i); }
  template <class V>
  V load_momentum(std::size_t i) const { return V::load(momentum_buffer + i); }
  template <class V>
  void store_momentum(V x, std::size_t i) const { x.store(momentum_buffer + i); }
};

// bfloat16 buffers rounded stochastically (round to nearest would stall v near alpha = 1).
struct Bfloat16State {
  bfloat16* square_avg;
  bfloat16* grad_avg;
  bfloat16* momentum_buffer;
  StateNoise* noise;
  template <class V>
  V load_square_avg(std::size_t i) const { return load_lanes(Tag<V>{}, square_avg + i); }
  template <class V>
  void store_square_avg(V x, std::size_t i) const {
    store_lanes_stochastic(x, square_avg + i, noise->square_avg(i));
  }
  template <class V>
  V load_grad_avg(std::size_t i) const { return load_lanes(Tag<V>{}, grad_avg + i); }
  template <class V>
  void store_grad_avg(V x, std::size_t i) const {
    store_lanes_stochastic(x, grad_avg + i, noise->grad_avg(i));
  }
  template <class V>
  V load_momentum(std::size_t i) const { return load_lanes(Tag<V>{}, momentum_buffer + i); }
  template <class V>
  void store_momentum(V x, std::size_t i) const {
    store_lanes_stochastic(x, momentum_buffer + i, noise->momentum_buffer(i));
  }
};

// 8-bit square_avg: the kernel works on one block at a time, with the block's v decoded into
// `block_v` (float) before the update and encoded from it after; momentum_buffer as bfloat16.
// No grad_avg: centered=True is refused.
struct EightBitState {
  float* block_v;
  std::size_t base;  // local index of the block's first element
  bfloat16* momentum_buffer;
  StateNoise* noise;
  template <class V>
  V load_square_avg(std::size_t i) const { return V::load(block_v + (i - base)); }
  template <class V>
  void store_square_avg(V x, std::size_t i) const { x.store(block_v + (i - base)); }
  template <class V>
  V load_momentum(std::size_t i) const { return load_lanes(Tag<V>{}, momentum_buffer + i); }
  template <class V>
  void store_momentum(V x, std::size_t i) const {
    store_lanes_stochastic(x, momentum_buffer + i, noise->momentum_buffer(i));
  }
};

// Plain loops over one block: integer and correctly rounded float operations only, so
// whatever the compiler vectorizes them into gives the same bits on every ISA.
inline void decode_block(const std::uint8_t* codes, float scale, std::size_t count, float* v) {
  for (std::size_t k = 0; k < count; ++k) {
    v[k] = float_of((static_cast<std::uint32_t>(codes[k]) + kCodeBias) << 20) * scale;
  }
}

// The block's largest v, by bit pattern: v >= 0, so the integer order is the float order, with
// +inf above every finite value and NaN (of either sign) above +inf. Exact and independent of
// the order of the reduction.
inline float block_scale(const float* v, std::size_t count) {
  std::uint32_t largest = 0;
  for (std::size_t k = 0; k < count; ++k) {
    const std::uint32_t b = bits_of(v[k]);
    largest = b > largest ? b : largest;
  }
  return float_of(largest);
}

// Stochastic rounding of r = v / scale (in [0, 1]) to the code: adding noise below the kept 3
// mantissa bits and truncating rounds up with probability equal to the distance from the lower
// code (16 noise bits over the 20 dropped ones: the probability is exact to 2^-16). Values on
// the grid are stored exactly; r below the smallest code (and r = 0) takes code 0; NaN takes
// 255 (its block decodes to NaN anyway). r is v times the rounded reciprocal of the scale
// (one division per block, not per element); it may exceed 1 by an ulp, which still takes
// code 255. A subnormal scale, whose reciprocal overflows, divides instead.
inline std::uint8_t code_of(float r, std::uint32_t noise) {
  const std::uint32_t rounded = (bits_of(r) + (noise << 4)) >> 20;
  const std::int32_t code =
      static_cast<std::int32_t>(rounded) - static_cast<std::int32_t>(kCodeBias);
  return static_cast<std::uint8_t>(code < 0 ? 0 : (code > 255 ? 255 : code));
}

inline void encode_block(const float* v, float scale, const std::uint32_t* noise,
                         std::size_t count, std::uint8_t* codes) {
  constexpr float kSmallestNormal = 1.17549435e-38f;
  if (scale == 0.0f) {  // an all-zero block: every code decodes to 0 * r = 0
    std::memset(codes, 0, count);
  } else if (scale < kSmallestNormal) {
    for (std::size_t k = 0; k < count; ++k) codes[k] = code_of(v[k] / scale, noise[k]);
  } else {
    const float inverse = 1.0f / scale;
    for (std::size_t k = 0; k < count; ++k) codes[k] = code_of(v[k] * inverse, noise[k]);
  }
}

}  // namespace
}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
