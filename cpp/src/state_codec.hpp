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
#include "simd_bits.hpp"
#include "state_noise_lanes.hpp"

namespace rmsprop {
namespace detail {
namespace RMSPROP_ISA_NS {
namespace {

// The 8-bit code of square_avg: r = v / scale, with scale the largest v of the block, is stored
// as a float with 5 exponent and 3 mantissa bits, code c standing for float_of((c + 761) << 20):
// c = 255 is exactly 1 (the block maximum), c = 0 is 1.125 * 2^-32. There is no zero code, so
// a stochastic rounding to 0 (and then a step g / eps) cannot happen.
constexpr std::uint32_t kCodeBias = 761;

template <class B>
inline B low16(B h) {
  return h & B::broadcast(0xFFFFu);
}

// Float state in the compute type: plain loads and stores, no noise.
struct NoNoise {};

template <class T>
struct FloatState {
  T* square_avg;
  T* grad_avg;
  T* momentum_buffer;
  template <class V>
  NoNoise noise(std::size_t) const { return {}; }
  void prefetch(std::size_t i, std::size_t ahead) const {
    prefetch_ahead(square_avg + i, ahead * sizeof(T));
    if (grad_avg) prefetch_ahead(grad_avg + i, ahead * sizeof(T));
    if (momentum_buffer) prefetch_ahead(momentum_buffer + i, ahead * sizeof(T));
  }
  template <class V>
  V load_square_avg(std::size_t i) const { return V::load(square_avg + i); }
  template <class V>
  void store_square_avg(V x, std::size_t i, NoNoise) const { x.store(square_avg + i); }
  template <class V>
  V load_grad_avg(std::size_t i) const { return V::load(grad_avg + i); }
  template <class V>
  void store_grad_avg(V x, std::size_t i, NoNoise) const { x.store(grad_avg + i); }
  template <class V>
  V load_momentum(std::size_t i) const { return V::load(momentum_buffer + i); }
  template <class V>
  void store_momentum(V x, std::size_t i, NoNoise) const { x.store(momentum_buffer + i); }
};

// One hash per lane serves square_avg (low half) and momentum_buffer (high half).
template <class V>
struct LaneNoise {
  Bits<V> h;
  Bits<V> grad_avg;
};

// bfloat16 buffers rounded stochastically (round to nearest would stall v near alpha = 1).
template <bool kCentered>
struct Bfloat16State {
  bfloat16* square_avg;
  bfloat16* grad_avg;
  bfloat16* momentum_buffer;
  const BlockNoise* block;
  void prefetch(std::size_t i, std::size_t ahead) const {
    prefetch_ahead(square_avg + i, ahead * 2);
    if (kCentered) prefetch_ahead(grad_avg + i, ahead * 2);
    if (momentum_buffer) prefetch_ahead(momentum_buffer + i, ahead * 2);
  }
  template <class V>
  LaneNoise<V> noise(std::size_t i) const {
    if constexpr (kCentered) return {block->hash<V>(i), block->grad_avg_hash<V>(i)};
    return {block->hash<V>(i), Bits<V>::broadcast(0)};
  }
  template <class V>
  V load_square_avg(std::size_t i) const { return load_lanes(Tag<V>{}, square_avg + i); }
  template <class V>
  void store_square_avg(V x, std::size_t i, const LaneNoise<V>& n) const {
    store_lanes_stochastic(x, square_avg + i, low16(n.h).value);
  }
  template <class V>
  V load_grad_avg(std::size_t i) const { return load_lanes(Tag<V>{}, grad_avg + i); }
  template <class V>
  void store_grad_avg(V x, std::size_t i, const LaneNoise<V>& n) const {
    store_lanes_stochastic(x, grad_avg + i, low16(n.grad_avg).value);
  }
  template <class V>
  V load_momentum(std::size_t i) const { return load_lanes(Tag<V>{}, momentum_buffer + i); }
  template <class V>
  void store_momentum(V x, std::size_t i, const LaneNoise<V>& n) const {
    store_lanes_stochastic(x, momentum_buffer + i, n.h.template shr<16>().value);
  }
};

// 8-bit square_avg, one block at a time: v is decoded from the codes as it is loaded, and the
// new v goes to `block_v` (float) for PendingEncode, which needs the block's largest new v
// first. momentum_buffer as bfloat16, its noise from `block` (the high halves of the state
// words, as for bfloat16 state). No grad_avg: centered=True is refused.
template <bool kMomentum>
struct EightBitState {
  std::uint8_t* codes;  // the tensor's codes (local index); PendingEncode writes them
  float scale;                // the block's scale before the step
  float* block_v;
  std::size_t base;  // local index of the block's first element
  bfloat16* momentum_buffer;
  const BlockNoise* block;  // read only with momentum
  void prefetch(std::size_t i, std::size_t ahead) const {
    prefetch_ahead(codes + i, ahead);
    if (kMomentum) prefetch_ahead(momentum_buffer + i, ahead * 2);
  }
  template <class V>
  Bits<V> noise(std::size_t i) const {
    if constexpr (kMomentum) return block->hash<V>(i);
    return Bits<V>::broadcast(0);
  }
  template <class V>
  V load_square_avg(std::size_t i) const {
    using B = Bits<V>;
    const B ratio = (B::load_bytes(codes + i) + B::broadcast(kCodeBias)).template shl<20>();
    return ratio.as_float() * V::broadcast(scale);
  }
  template <class V>
  void store_square_avg(V x, std::size_t i, const Bits<V>&) const {
    x.store(block_v + (i - base));
  }
  template <class V>
  V load_momentum(std::size_t i) const { return load_lanes(Tag<V>{}, momentum_buffer + i); }
  template <class V>
  void store_momentum(V x, std::size_t i, const Bits<V>& h) const {
    store_lanes_stochastic(x, momentum_buffer + i, h.template shr<16>().value);
  }
};

// The block's largest v, by bit pattern: v >= 0, so the integer order is the float order, with
// +inf above every finite value and NaN (of either sign) above +inf. Exact and independent of
// the order of the reduction.
inline float block_scale(const float* v, std::size_t count) {
  using W = Wide<float>;
  using B = Bits<W>;
  B wide = B::broadcast(0);
  std::size_t k = 0;
  for (; k + W::kLanes <= count; k += W::kLanes) wide = max_unsigned(wide, B::of(W::load(v + k)));
  std::uint32_t largest = wide.max_lane();
  for (; k < count; ++k) largest = bits_of(v[k]) > largest ? bits_of(v[k]) : largest;
  return float_of(largest);
}

// Stochastic rounding of r = v / scale (in [0, 1]) to the code: adding noise below the kept 3
// mantissa bits and truncating rounds up with probability equal to the distance from the lower
// code (16 noise bits over the 20 dropped ones: the probability is exact to 2^-16). Values on
// the grid are stored exactly; r below the smallest code (and r = 0) takes code 0; NaN takes
// 255 (its block decodes to NaN anyway). r is v times the rounded reciprocal of the scale
// (one division per block, not per element); it may exceed 1 by an ulp, which still takes
// code 255. A subnormal scale, whose reciprocal overflows, divides instead.
template <class V>
inline void store_codes(V r, Bits<V> noise16, std::uint8_t* codes) {
  using B = Bits<V>;
  const B rounded = (B::of(r) + noise16.template shl<4>()).template shr<20>();
  max_signed_zero(rounded - B::broadcast(kCodeBias)).store_bytes_saturated(codes);
}

// A finished block's codes, written a vector at a time by next() (between the vectors of the
// next block's update) and completed by finish(). The block's scale is the largest new v.
template <bool kMomentum>
class PendingEncode {
 public:
  PendingEncode(std::uint64_t rounding_key, std::uint64_t index_offset)
      : noise_(rounding_key, index_offset) {}
  void start(const EightBitState<kMomentum>& st, std::size_t count, float* scale_out) {
    constexpr float kSmallestNormal = 1.17549435e-38f;
    st_ = st;
    noise_.start_block(st.base, count);
    next_ = st.base;
    end_ = st.base + count;
    scale_ = block_scale(st.block_v, count);
    *scale_out = scale_;
    divide_ = scale_ < kSmallestNormal;
    inverse_ = divide_ ? 0.0f : 1.0f / scale_;
    if (scale_ == 0.0f) {  // an all-zero block: every code decodes to 0 * r = 0
      std::memset(st.codes + st.base, 0, count);
      next_ = end_;
    }
  }
  RMSPROP_INLINE void next() {
    using W = Wide<float>;
    if (next_ + W::kLanes <= end_) {
      lanes<W>(next_);
      next_ += W::kLanes;
    }
  }
  void finish() {
    using W = Wide<float>;
    for (; next_ + W::kLanes <= end_; next_ += W::kLanes) lanes<W>(next_);
    for (; next_ < end_; ++next_) lanes<Scalar<float>>(next_);
  }

 private:
  template <class V>
  RMSPROP_INLINE void lanes(std::size_t i) {
    const V v = V::load(st_.block_v + (i - st_.base));
    // A subnormal scale, whose reciprocal overflows, divides instead (rare: no fast path).
    const V r = divide_ ? v / V::broadcast(scale_) : v * V::broadcast(inverse_);
    store_codes(r, noise_.template next16<V>(i), st_.codes + i);
  }

  CodeNoise noise_;
  EightBitState<kMomentum> st_{};
  std::size_t next_ = 0, end_ = 0;
  float scale_ = 0.0f, inverse_ = 0.0f;
  bool divide_ = false;
};

}  // namespace
}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
