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

// State noise is keyed apart from the params' own stochastic-rounding noise (same tensor, step
// and element) by one salt per buffer. Each hash gives the 16-bit noise words of four
// consecutive elements, so the noise costs a quarter of a hash per element and buffer.
constexpr std::uint64_t kSquareAvgSalt = 0x73746174655F7631ull;  // "state_v1"
constexpr std::uint64_t kMomentumSalt = 0x73746174655F6D31ull;   // "state_m1"
constexpr std::uint64_t kGradAvgSalt = 0x73746174655F6731ull;    // "state_g1"
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// The 8-bit code of square_avg: r = v / scale, with scale the largest v of the block, is stored
// as a float with 5 exponent and 3 mantissa bits, code c standing for float_of((c + 761) << 20):
// c = 255 is exactly 1 (the block maximum), c = 0 is 1.125 * 2^-32. There is no zero code, so
// a stochastic rounding to 0 (and then a step g / eps) cannot happen.
constexpr std::uint32_t kCodeBias = 761;

// 16-bit noise words of one buffer for up to one block of elements: element e (global index)
// takes bits [16 (e % 4), 16 (e % 4) + 16) of mix64(key + (e / 4) * golden).
struct NoiseWords {
  alignas(64) std::uint32_t words[kEightBitBlock + 8];
  const std::uint32_t* at = words;  // the word of local element `base`
  std::size_t base = 0;

  // Words of `count` elements from local index `local` (global index `global`).
  void fill(std::uint64_t key, std::uint64_t global, std::size_t local, std::size_t count) {
    const std::uint64_t first_hash = global >> 2;
    const std::size_t hashes = static_cast<std::size_t>(((global + count + 3) >> 2) - first_hash);
    for (std::size_t j = 0; j < hashes; ++j) {
      const std::uint64_t h = mix64(key + (first_hash + j) * kGolden);
      words[4 * j] = static_cast<std::uint32_t>(h & 0xFFFFu);
      words[4 * j + 1] = static_cast<std::uint32_t>((h >> 16) & 0xFFFFu);
      words[4 * j + 2] = static_cast<std::uint32_t>((h >> 32) & 0xFFFFu);
      words[4 * j + 3] = static_cast<std::uint32_t>(h >> 48);
    }
    at = words + (global & 3);
    base = local;
  }
  const std::uint32_t* of(std::size_t i) const { return at + (i - base); }
};

// Keys and words of the three buffers, filled a block at a time.
struct StateNoise {
  std::uint64_t index_offset;
  std::uint64_t square_avg_key, momentum_key, grad_avg_key;
  bool momentum, centered;  // which buffers are rounded
  NoiseWords square_avg, momentum_buffer, grad_avg;

  StateNoise(std::uint64_t rounding_key, std::uint64_t offset, bool has_momentum,
             bool is_centered)
      : index_offset(offset),
        square_avg_key(mix64(rounding_key ^ kSquareAvgSalt)),
        momentum_key(mix64(rounding_key ^ kMomentumSalt)),
        grad_avg_key(mix64(rounding_key ^ kGradAvgSalt)),
        momentum(has_momentum),
        centered(is_centered) {}

  void fill_square_avg(std::size_t i, std::size_t count) {
    square_avg.fill(square_avg_key, index_offset + i, i, count);
  }
  void fill_others(std::size_t i, std::size_t count) {
    if (momentum) momentum_buffer.fill(momentum_key, index_offset + i, i, count);
    if (centered) grad_avg.fill(grad_avg_key, index_offset + i, i, count);
  }
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
    store_lanes_stochastic(x, square_avg + i, noise->square_avg.of(i));
  }
  template <class V>
  V load_grad_avg(std::size_t i) const { return load_lanes(Tag<V>{}, grad_avg + i); }
  template <class V>
  void store_grad_avg(V x, std::size_t i) const {
    store_lanes_stochastic(x, grad_avg + i, noise->grad_avg.of(i));
  }
  template <class V>
  V load_momentum(std::size_t i) const { return load_lanes(Tag<V>{}, momentum_buffer + i); }
  template <class V>
  void store_momentum(V x, std::size_t i) const {
    store_lanes_stochastic(x, momentum_buffer + i, noise->momentum_buffer.of(i));
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
    store_lanes_stochastic(x, momentum_buffer + i, noise->momentum_buffer.of(i));
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
