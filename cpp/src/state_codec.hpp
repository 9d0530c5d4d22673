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
#include "state_noise.hpp"

namespace rmsprop {
namespace detail {
namespace RMSPROP_ISA_NS {
namespace {

// State noise (state_noise.hpp). Keys come from the package's mix64 (seed, tensor, step, and a
// salt apart from the params' own rounding noise); each element's 32-bit word gives 16 bits for
// square_avg (low half) and 16 for momentum_buffer (high half); grad_avg takes the low half of
// its word under its own salt.
constexpr std::uint64_t kStateSalt = 0x73746174655F7631ull;    // "state_v1"
constexpr std::uint64_t kGradAvgSalt = 0x73746174655F6731ull;  // "state_g1"

// The 8-bit code of square_avg: r = v / scale, with scale the largest v of the block, is stored
// as a float with 5 exponent and 3 mantissa bits, code c standing for float_of((c + 761) << 20):
// c = 255 is exactly 1 (the block maximum), c = 0 is 1.125 * 2^-32. There is no zero code, so
// a stochastic rounding to 0 (and then a step g / eps) cannot happen.
constexpr std::uint32_t kCodeBias = 761;

// The AES of NoiseLanes on this ISA's widest integer registers, where its build has VAES (used
// only when the CPU has it too: cpu_has_vaes512/256). Lanes as in state_noise.hpp: each 128-bit
// block holds one quad.
#if defined(__AVX512F__) && defined(__VAES__)
#define RMSPROP_NOISE_IN_REGISTERS 1
struct AesRegister {
  using type = __m512i;
  static bool usable() { return cpu_has_vaes512(); }
  static type block(std::uint64_t low, std::uint64_t high) {
    return _mm512_broadcast_i32x4(
        _mm_set_epi64x(static_cast<long long>(high), static_cast<long long>(low)));
  }
  static type quad_numbers() { return _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0); }
  static type add64(type a, type b) { return _mm512_add_epi64(a, b); }
  // x in the blocks' low halves (the even 64-bit lanes), 0 in the high ones.
  static type in_low_halves(std::uint64_t x) {
    return _mm512_maskz_set1_epi64(0x55, static_cast<long long>(x));
  }
  static type aes_round(type x, type key) { return _mm512_aesenc_epi128(x, key); }
};
#elif defined(__AVX2__) && defined(__VAES__)
#define RMSPROP_NOISE_IN_REGISTERS 1
struct AesRegister {
  using type = __m256i;
  static bool usable() { return cpu_has_vaes256(); }
  static type block(std::uint64_t low, std::uint64_t high) {
    return _mm256_broadcastsi128_si256(
        _mm_set_epi64x(static_cast<long long>(high), static_cast<long long>(low)));
  }
  static type quad_numbers() { return _mm256_set_epi64x(0, 1, 0, 0); }
  static type add64(type a, type b) { return _mm256_add_epi64(a, b); }
  static type in_low_halves(std::uint64_t x) {
    const __m256i all = _mm256_set1_epi64x(static_cast<long long>(x));
    return _mm256_blend_epi32(_mm256_setzero_si256(), all, 0x33);
  }
  static type aes_round(type x, type key) { return _mm256_aesenc_epi128(x, key); }
};
#else
#define RMSPROP_NOISE_IN_REGISTERS 0  // no in-register AES in this build: words from a buffer
#endif

#if RMSPROP_NOISE_IN_REGISTERS
// The words of a register's quads at once (four per AVX-512 register, two per AVX2 one).
class NoiseLanes {
 public:
  using R = AesRegister;
  static constexpr std::size_t kLanes = sizeof(R::type) / 4;
  explicit NoiseLanes(const NoiseKey& key) {
    for (int j = 0; j < kNoiseRounds; ++j) round_[j] = R::block(key.round[j][0], key.round[j][1]);
    base_ = R::add64(R::block(key.whitening[0], key.whitening[1]), R::quad_numbers());
  }
  RMSPROP_INLINE R::type words(std::uint64_t first_quad) const {
    R::type x = R::add64(base_, R::in_low_halves(first_quad));
    for (int j = 0; j < kNoiseRounds; ++j) x = R::aes_round(x, round_[j]);
    return x;
  }

 private:
  R::type round_[kNoiseRounds];
  R::type base_;
};
#endif

// The state noise of one block of up to kEightBitBlock elements. Where the block starts on a
// quad and the CPU has VAES, a vector's words are computed in registers as it is updated: the
// AES instructions then fill issue slots left while the update waits on its divisions. Else
// (and for scalar tails) they are filled into a buffer when the block starts. The words are
// keyed on the global index, so a span starting anywhere (a shard, a row) reads the same words
// as the whole tensor.
class BlockNoise {
 public:
  BlockNoise(std::uint64_t rounding_key, std::uint64_t offset, bool with_grad_avg)
      : index_offset_(offset),
        key_(make_noise_key(mix64(rounding_key ^ kStateSalt))),
        // Only centered steps round a grad_avg: the others skip its key (a row step builds a
        // BlockNoise per row).
        grad_avg_key_(with_grad_avg ? make_noise_key(mix64(rounding_key ^ kGradAvgSalt))
                                    : NoiseKey{}),
#if RMSPROP_NOISE_IN_REGISTERS
        lanes_(key_),
        grad_avg_lanes_(grad_avg_key_),
        usable_(AesRegister::usable()),
#endif
        with_grad_avg_(with_grad_avg) {
  }

  void start_block(std::size_t local, std::size_t count) {
    const std::uint64_t first = index_offset_ + local;
    base_ = local;
    first_quad_ = first >> 2;
    skip_ = static_cast<std::size_t>(first & 3);
#if RMSPROP_NOISE_IN_REGISTERS
    in_registers_ = usable_ && skip_ == 0;
    if (in_registers_ && count % NoiseLanes::kLanes == 0) return;  // no scalar tail reads the buffer
#endif
    const std::size_t quads = (skip_ + count + 3) / 4;
    fill_noise_words(key_, first_quad_, quads, words_);
    if (with_grad_avg_) fill_noise_words(grad_avg_key_, first_quad_, quads, grad_avg_words_);
  }
  // 32 bits per lane for the elements i, i+1, ...: square_avg takes the low 16, momentum_buffer
  // the high 16.
  template <class V>
  RMSPROP_INLINE Bits<V> hash(std::size_t i) const {
#if RMSPROP_NOISE_IN_REGISTERS
    if constexpr (V::kLanes == NoiseLanes::kLanes) {
      if (in_registers_) return {lanes_.words(first_quad_ + (i - base_) / 4)};
    }
#endif
    return Bits<V>::load(words_ + skip_ + (i - base_));
  }
  // grad_avg's own 32 bits (it takes the low 16).
  template <class V>
  RMSPROP_INLINE Bits<V> grad_avg_hash(std::size_t i) const {
#if RMSPROP_NOISE_IN_REGISTERS
    if constexpr (V::kLanes == NoiseLanes::kLanes) {
      if (in_registers_) return {grad_avg_lanes_.words(first_quad_ + (i - base_) / 4)};
    }
#endif
    return Bits<V>::load(grad_avg_words_ + skip_ + (i - base_));
  }

 private:
  static constexpr std::size_t kWords = kEightBitBlock + 4;  // a block may straddle 65 quads
  std::uint64_t index_offset_;
  NoiseKey key_, grad_avg_key_;
#if RMSPROP_NOISE_IN_REGISTERS
  NoiseLanes lanes_, grad_avg_lanes_;
  bool usable_;
  bool in_registers_ = false;
#endif
  bool with_grad_avg_;
  std::size_t base_ = 0, skip_ = 0;
  std::uint64_t first_quad_ = 0;
  alignas(64) std::uint32_t words_[kWords];
  alignas(64) std::uint32_t grad_avg_words_[kWords];
};

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
// new v goes to `block_v` (float) for encode_block, which needs the block's largest new v
// first; the block's noise stays in its BlockNoise until then. momentum_buffer as bfloat16.
// No grad_avg: centered=True is refused.
template <bool kMomentum>
struct EightBitState {
  std::uint8_t* codes;  // the tensor's codes (local index); PendingEncode writes them
  float scale;                // the block's scale before the step
  float* block_v;
  std::size_t base;  // local index of the block's first element
  bfloat16* momentum_buffer;
  const BlockNoise* block;
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
  void start(const EightBitState<kMomentum>& st, std::size_t count, float* scale_out) {
    constexpr float kSmallestNormal = 1.17549435e-38f;
    st_ = st;  // st.block keeps the block's noise until the block after next starts
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
  RMSPROP_INLINE void lanes(std::size_t i) const {
    const V v = V::load(st_.block_v + (i - st_.base));
    // A subnormal scale, whose reciprocal overflows, divides instead (rare: no fast path).
    const V r = divide_ ? v / V::broadcast(scale_) : v * V::broadcast(inverse_);
    store_codes(r, low16(st_.block->template hash<V>(i)), st_.codes + i);
  }

  EightBitState<kMomentum> st_{};
  std::size_t next_ = 0, end_ = 0;
  float scale_ = 0.0f, inverse_ = 0.0f;
  bool divide_ = false;
};

}  // namespace
}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
