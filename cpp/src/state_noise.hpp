// The noise that rounds compact optimizer state and bfloat16 params stochastically (SPEC §8):
// 32-bit words, a keyed function of the global index, the same bits on every ISA and thread
// count. Which 16 bits of which word an element takes: state_noise_lanes.hpp.
//
// Element e's word is 32-bit lane e mod 4 of AES's round function (AESENC: ShiftRows, SubBytes,
// MixColumns, round key) applied kNoiseRounds times to the 128-bit block whose low 64 bits are
// e / 4 + whitening[0] and high 64 bits whitening[1], bytes little-endian. AES rather than an
// integer hash because the hardware does four elements' worth of a round in one instruction:
// the integer hash it replaces (lowbias32, two 32-bit multiplies per element) was a quarter of
// the 8-bit step's time. Four rounds, not two: two leave adjacent quads' bytes linearly related
// (MixColumns of a single-byte difference), three leave the 256-quad integral.
// Must not contain the kernel's update or anything ISA-specific in its interface.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rmsprop {
namespace detail {

constexpr int kNoiseRounds = 4;

// Derived once per tensor, step and buffer from that buffer's 64-bit key K: whitening
// {K, mix64(K + golden)}, round j's key {mix64((2j + 1) golden), mix64((2j + 2) golden)}.
struct NoiseKey {
  std::uint64_t whitening[2];
  std::uint64_t round[kNoiseRounds][2];  // {low 64 bits, high 64 bits} of each round key
};

NoiseKey make_noise_key(std::uint64_t key);

// Writes the words of quads first_quad .. first_quad + quads - 1 (4 words per quad, element
// 4 * first_quad first) to out, with the fastest implementation this CPU has.
void fill_noise_words(const NoiseKey& key, std::uint64_t first_quad, std::size_t quads,
                      std::uint32_t* out);

// Whether the CPU runs VAES on 512-bit (AVX-512) and on 256-bit registers: the kernels then
// compute the words in registers (state_noise_lanes.hpp) instead of reading them from a buffer.
bool cpu_has_vaes512();
bool cpu_has_vaes256();

// The implementations, for tests: each must give the same words.
enum class NoiseImpl : int { kSoftware = 0, kAesNi = 1, kVaes512 = 2 };
bool noise_impl_available(NoiseImpl impl);
// Throws std::invalid_argument when the CPU lacks impl.
void fill_noise_words_with(NoiseImpl impl, const NoiseKey& key, std::uint64_t first_quad,
                           std::size_t quads, std::uint32_t* out);

}  // namespace detail
}  // namespace rmsprop
