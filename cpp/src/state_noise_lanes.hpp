// The stochastic-rounding noise as the kernel reads it (SPEC §8): which bits of the words of
// state_noise.hpp each element of each buffer takes (BlockNoise: bfloat16 state and 8-bit
// momentum; CodeNoise: 8-bit codes; ParamNoise: bfloat16 params). A vector's words are
// computed in registers where the CPU has VAES and the vector starts on its words' first
// element, else filled into a buffer.
// Included by state_codec.hpp once per ISA; everything has internal linkage.
// Must not contain the codecs (state_codec.hpp) or the update (kernel_impl.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "kernel.hpp"
#include "simd.hpp"
#include "simd_bits.hpp"
#include "state_noise.hpp"

namespace rmsprop {
namespace detail {
namespace RMSPROP_ISA_NS {
namespace {

// State noise (state_noise.hpp). Keys come from the package's mix64 (seed, tensor, step, and a
// salt apart from the params' own rounding noise). bfloat16 buffers: each element's 32-bit word
// gives 16 bits for square_avg (low half) and 16 for momentum_buffer (high half); grad_avg
// takes the low half of its word under its own salt. 8-bit square_avg: CodeNoise. bfloat16
// params: ParamNoise.
constexpr std::uint64_t kStateSalt = 0x73746174655F7631ull;    // "state_v1"
constexpr std::uint64_t kGradAvgSalt = 0x73746174655F6731ull;  // "state_g1"
constexpr std::uint64_t kCodeSalt = 0x73746174655F6331ull;     // "state_c1"
constexpr std::uint64_t kParamSalt = 0x706172616D5F7631ull;    // "param_v1"

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
  static void store(std::uint32_t* aligned, type x) { _mm512_store_si512(aligned, x); }
  // Words skip .. skip + 15 of lo's 16 followed by hi's (skip < 16).
  static type shifted(type lo, type hi, unsigned skip) {
    const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    return _mm512_permutex2var_epi32(
        lo, _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(skip))), hi);
  }
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
  static void store(std::uint32_t* aligned, type x) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(aligned), x);
  }
  // Words skip .. skip + 7 of lo's 8 followed by hi's (skip < 8).
  static type shifted(type lo, type hi, unsigned skip) {
    const __m256i lanes = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(static_cast<int>(skip)));
    const __m256i rotate = _mm256_and_si256(lanes, _mm256_set1_epi32(7));
    const __m256i from_hi = _mm256_cmpgt_epi32(lanes, _mm256_set1_epi32(7));
    return _mm256_blendv_epi8(_mm256_permutevar8x32_epi32(lo, rotate),
                              _mm256_permutevar8x32_epi32(hi, rotate), from_hi);
  }
};
#else
#define RMSPROP_NOISE_IN_REGISTERS 0  // no in-register AES in this build: words from a buffer
#endif

#if RMSPROP_NOISE_IN_REGISTERS
// The words of a register's quads at once (four per AVX-512 register, two per AVX2 one).
// The kernels' vectors are as wide: a block whose vectors are all full reads no buffer.
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
static_assert(NoiseLanes::kLanes == Wide<float>::kLanes,
              "the buffer is skipped for blocks of whole vectors: they must read registers");
#endif

// One buffer's noise: its key (mix64 of the rounding key and the buffer's salt) and, where the
// build and the CPU have VAES, the same key in registers.
class SaltedNoise {
 public:
  SaltedNoise(std::uint64_t rounding_key, std::uint64_t salt)
      : key_(make_noise_key(mix64(rounding_key ^ salt)))
#if RMSPROP_NOISE_IN_REGISTERS
        ,
        lanes_(key_),
        in_registers_(AesRegister::usable())
#endif
  {
  }
  bool in_registers() const {
#if RMSPROP_NOISE_IN_REGISTERS
    return in_registers_;
#else
    return false;
#endif
  }
#if RMSPROP_NOISE_IN_REGISTERS
  RMSPROP_INLINE AesRegister::type words(std::uint64_t first_quad) const {
    return lanes_.words(first_quad);
  }
#endif
  void fill(std::uint64_t first_quad, std::size_t quads, std::uint32_t* out) const {
    fill_noise_words(key_, first_quad, quads, out);
  }

 private:
  NoiseKey key_;
#if RMSPROP_NOISE_IN_REGISTERS
  NoiseLanes lanes_;
  bool in_registers_;
#endif
};

// The state noise of one block of up to kEightBitBlock elements. Where the block starts on a
// quad and the CPU has VAES, a vector's words are computed in registers as it is updated: the
// AES instructions then fill issue slots left while the update waits on its divisions. Else
// (and for scalar tails) they are filled into a buffer when the block starts. The words are
// keyed on the global index, so a span starting anywhere (a shard, a row) reads the same words
// as the whole tensor.
class BlockNoise {
 public:
  BlockNoise(std::uint64_t rounding_key, std::uint64_t offset, bool with_grad_avg)
      : index_offset_(offset), noise_(rounding_key, kStateSalt) {
    // Only centered steps round a grad_avg: the others skip its key (a row step builds a
    // BlockNoise per row).
    if (with_grad_avg) grad_avg_noise_.emplace(rounding_key, kGradAvgSalt);
  }

  void start_block(std::size_t local, std::size_t count) {
    const std::uint64_t first = index_offset_ + local;
    base_ = local;
    first_quad_ = first >> 2;
    skip_ = static_cast<std::size_t>(first & 3);
    in_registers_ = noise_.in_registers() && skip_ == 0;
#if RMSPROP_NOISE_IN_REGISTERS
    if (in_registers_ && count % NoiseLanes::kLanes == 0) return;  // no scalar tail reads words
#endif
    const std::size_t quads = (skip_ + count + 3) / 4;
    noise_.fill(first_quad_, quads, words_);
    if (grad_avg_noise_) grad_avg_noise_->fill(first_quad_, quads, grad_avg_words_);
  }
  // 32 bits per lane for the elements i, i+1, ...: square_avg takes the low 16, momentum_buffer
  // the high 16.
  template <class V>
  RMSPROP_INLINE Bits<V> hash(std::size_t i) const {
    return lanes<V>(noise_, words_, i);
  }
  // grad_avg's own 32 bits (it takes the low 16); only with a grad_avg.
  template <class V>
  RMSPROP_INLINE Bits<V> grad_avg_hash(std::size_t i) const {
    return lanes<V>(*grad_avg_noise_, grad_avg_words_, i);
  }

 private:
  static constexpr std::size_t kWords = kEightBitBlock + 4;  // a block may straddle 65 quads
  template <class V>
  RMSPROP_INLINE Bits<V> lanes([[maybe_unused]] const SaltedNoise& noise,
                               const std::uint32_t* words, std::size_t i) const {
#if RMSPROP_NOISE_IN_REGISTERS
    if constexpr (V::kLanes == NoiseLanes::kLanes) {
      if (in_registers_) return {noise.words(first_quad_ + (i - base_) / 4)};
    }
#endif
    return Bits<V>::load(words + skip_ + (i - base_));
  }

  std::uint64_t index_offset_;
  SaltedNoise noise_;
  std::optional<SaltedNoise> grad_avg_noise_;
  bool in_registers_ = false;
  std::size_t base_ = 0, skip_ = 0;
  std::uint64_t first_quad_ = 0;
  alignas(64) std::uint32_t words_[kWords];
  alignas(64) std::uint32_t grad_avg_words_[kWords];
};

// The noise of 8-bit square_avg codes, under its own salt: 16 bits per element, each word
// serving two elements. Element e takes half (e / 16) mod 2 of word (e / 32) * 16 + e mod 16:
// a group of 32 elements reads the 16 words of 4 quads, its first 16 elements the low halves
// and its last 16 the high halves, so each AES serves twice its lanes (one 512-bit AES two
// AVX-512 vectors; the AES was the largest part of the 8-bit encode).
// next16 must visit a block's vectors in order: a group's second half reuses the first's AES.
class CodeNoise {
 public:
  static constexpr std::size_t kGroup = 32;

  CodeNoise(std::uint64_t rounding_key, std::uint64_t offset)
      : index_offset_(offset), noise_(rounding_key, kCodeSalt) {}

  // 8-bit blocks start on a multiple of 256 in the whole tensor (dispatch.cpp requires it of
  // every piece), so on a group.
  void start_block(std::size_t local, std::size_t count) {
    base_ = local;
    first_group_ = (index_offset_ + local) / kGroup;
#if RMSPROP_NOISE_IN_REGISTERS
    if (noise_.in_registers() && count % NoiseLanes::kLanes == 0) return;  // no tail reads words_
#endif
    const std::size_t groups = (count + kGroup - 1) / kGroup;
    noise_.fill(first_group_ * 4, groups * 4, words_);
    for (std::size_t g = 0; g < groups; ++g) {
      for (std::size_t k = 0; k < kGroup / 2; ++k) {
        const std::uint32_t word = words_[g * kGroup / 2 + k];
        noise16_[g * kGroup + k] = word & 0xFFFFu;
        noise16_[g * kGroup + kGroup / 2 + k] = word >> 16;
      }
    }
  }
  // The 16 noise bits (in the low half of each lane) of the elements i, i+1, ...
  template <class V>
  RMSPROP_INLINE Bits<V> next16(std::size_t i) {
#if RMSPROP_NOISE_IN_REGISTERS
    if constexpr (V::kLanes == NoiseLanes::kLanes) {
      if (noise_.in_registers()) {
        constexpr std::size_t kRegisters = kGroup / 2 / V::kLanes;  // a group's words
        const std::size_t local = i - base_;
        const std::size_t r = local % kGroup / V::kLanes;
        if (r >= kRegisters) return Bits<V>{group_[r - kRegisters]}.template shr<16>();
        const std::uint64_t quad = (first_group_ + local / kGroup) * 4 + r * (V::kLanes / 4);
        group_[r] = noise_.words(quad);
        return Bits<V>{group_[r]} & Bits<V>::broadcast(0xFFFFu);
      }
    }
#endif
    return Bits<V>::load(noise16_ + (i - base_));
  }

 private:
  static constexpr std::size_t kGroups = kEightBitBlock / kGroup;
  static_assert(kEightBitBlock % kGroup == 0, "a block holds whole groups");
  std::uint64_t index_offset_;
  SaltedNoise noise_;
#if RMSPROP_NOISE_IN_REGISTERS
  AesRegister::type group_[kGroup / 2 / NoiseLanes::kLanes];
#endif
  std::size_t base_ = 0;
  std::uint64_t first_group_ = 0;
  alignas(64) std::uint32_t words_[kGroups * kGroup / 2];
  alignas(64) std::uint32_t noise16_[kGroups * kGroup];
};

// The stochastic-rounding noise of bfloat16 params, under the params' own salt: element e
// takes the low 16 bits of its word. Where the CPU has VAES a vector's words come from
// registers wherever it starts (off a quad: two registers' words, shifted), as do a scalar
// tail's.
class ParamNoise {
 public:
  static constexpr std::size_t kBuffer = 32;  // words; 64-byte aligned

  ParamNoise(std::uint64_t rounding_key, std::uint64_t offset)
      : index_offset_(offset), noise_(rounding_key, kParamSalt) {}

  // The words of `count` elements from local index i (count < kBuffer - 3), written to
  // `buffer`; the return value points at element i's.
  const std::uint32_t* filled(std::size_t i, std::size_t count, std::uint32_t* buffer) const {
    const std::uint64_t e = index_offset_ + i;
    const std::size_t skip = static_cast<std::size_t>(e % 4);
#if RMSPROP_NOISE_IN_REGISTERS
    constexpr std::size_t kLanes = NoiseLanes::kLanes;
    if (noise_.in_registers() && skip + count <= 2 * kLanes) {
      AesRegister::store(buffer, noise_.words(e / 4));
      if (skip + count > kLanes) {
        AesRegister::store(buffer + kLanes, noise_.words(e / 4 + kLanes / 4));
      }
      return buffer + skip;
    }
#endif
    noise_.fill(e / 4, (skip + count + 3) / 4, buffer);
    return buffer + skip;
  }
  // A vector's words.
  template <std::size_t kLanes>
  RMSPROP_INLINE const std::uint32_t* words(std::size_t i, std::uint32_t* buffer) const {
#if RMSPROP_NOISE_IN_REGISTERS
    if constexpr (kLanes == NoiseLanes::kLanes) {
      if (noise_.in_registers()) {
        const std::uint64_t e = index_offset_ + i;
        const unsigned skip = static_cast<unsigned>(e % 4);
        const AesRegister::type first = noise_.words(e / 4);
        AesRegister::store(buffer, skip == 0 ? first
                                             : AesRegister::shifted(
                                                   first, noise_.words(e / 4 + kLanes / 4), skip));
        return buffer;
      }
    }
#endif
    return filled(i, kLanes, buffer);
  }

 private:
  std::uint64_t index_offset_;
  SaltedNoise noise_;
};

}  // namespace
}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
