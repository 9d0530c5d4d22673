// The state noise's three implementations (state_noise.hpp): portable C++, AES-NI (a 128-bit
// block at a time) and VAES (four blocks per AVX-512 instruction). Compiled for the baseline
// ISA; the hardware versions carry target attributes and run only where CPUID lists their
// instructions, so one object serves every CPU. Must not contain the kernel's update.
#include "state_noise.hpp"

#include <array>
#include <cstring>
#include <stdexcept>

#include "kernel.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define RMSPROP_NOISE_X86 1
#endif

namespace rmsprop {
namespace detail {
namespace {

// ---------------------------------------------------------------------------------------------
// Portable AES round (FIPS-197 SubBytes, ShiftRows, MixColumns; then the round key, as AESENC).

constexpr std::uint8_t times_x(std::uint8_t b) {
  return static_cast<std::uint8_t>((b << 1) ^ ((b & 0x80) ? 0x1B : 0x00));
}

constexpr std::uint8_t gf_multiply(std::uint8_t a, std::uint8_t b) {
  std::uint8_t product = 0;
  for (int k = 0; k < 8; ++k) {
    if (b & 1) product ^= a;
    a = times_x(a);
    b = static_cast<std::uint8_t>(b >> 1);
  }
  return product;
}

constexpr std::uint8_t rotate_left(std::uint8_t b, int k) {
  return static_cast<std::uint8_t>((b << k) | (b >> (8 - k)));
}

// The S-box from its definition: the multiplicative inverse in GF(2^8) (x^254; 0 maps to 0),
// then the affine map b ^ rotl(b,1) ^ rotl(b,2) ^ rotl(b,3) ^ rotl(b,4) ^ 0x63.
constexpr std::array<std::uint8_t, 256> make_sbox() {
  std::array<std::uint8_t, 256> box{};
  for (int x = 0; x < 256; ++x) {
    std::uint8_t inverse = 1;
    std::uint8_t power = static_cast<std::uint8_t>(x);
    for (int e = 254; e > 0; e >>= 1) {  // square-and-multiply
      if (e & 1) inverse = gf_multiply(inverse, power);
      power = gf_multiply(power, power);
    }
    if (x == 0) inverse = 0;
    box[x] = static_cast<std::uint8_t>(inverse ^ rotate_left(inverse, 1) ^
                                       rotate_left(inverse, 2) ^ rotate_left(inverse, 3) ^
                                       rotate_left(inverse, 4) ^ 0x63);
  }
  return box;
}

constexpr std::array<std::uint8_t, 256> kSbox = make_sbox();
static_assert(kSbox[0x00] == 0x63 && kSbox[0x01] == 0x7C && kSbox[0x53] == 0xED,
              "FIPS-197's S-box");

// Byte r + 4c of the block is row r, column c of AES's state.
void aes_round(std::uint8_t state[16], const std::uint8_t round_key[16]) {
  std::uint8_t shifted[16];
  for (int c = 0; c < 4; ++c) {
    for (int r = 0; r < 4; ++r) shifted[r + 4 * c] = kSbox[state[r + 4 * ((c + r) & 3)]];
  }
  for (int c = 0; c < 4; ++c) {
    const std::uint8_t* b = shifted + 4 * c;
    const std::uint8_t all = static_cast<std::uint8_t>(b[0] ^ b[1] ^ b[2] ^ b[3]);
    for (int r = 0; r < 4; ++r) {
      // 2*b[r] ^ 3*b[r+1] ^ b[r+2] ^ b[r+3] = b[r] ^ all ^ 2*(b[r] ^ b[r+1])
      state[r + 4 * c] = static_cast<std::uint8_t>(
          b[r] ^ all ^ times_x(static_cast<std::uint8_t>(b[r] ^ b[(r + 1) & 3])) ^
          round_key[r + 4 * c]);
    }
  }
}

void store_le64(std::uint64_t x, std::uint8_t* out) {
  for (int k = 0; k < 8; ++k) out[k] = static_cast<std::uint8_t>(x >> (8 * k));
}

void fill_software(const NoiseKey& key, std::uint64_t first_quad, std::size_t quads,
                   std::uint32_t* out) {
  std::uint8_t round_keys[kNoiseRounds][16];
  for (int j = 0; j < kNoiseRounds; ++j) {
    store_le64(key.round[j][0], round_keys[j]);
    store_le64(key.round[j][1], round_keys[j] + 8);
  }
  for (std::size_t k = 0; k < quads; ++k) {
    std::uint8_t block[16];
    store_le64(first_quad + k + key.whitening[0], block);
    store_le64(key.whitening[1], block + 8);
    for (int j = 0; j < kNoiseRounds; ++j) aes_round(block, round_keys[j]);
    for (int lane = 0; lane < 4; ++lane) {
      const std::uint8_t* b = block + 4 * lane;
      out[4 * k + lane] = static_cast<std::uint32_t>(b[0]) | static_cast<std::uint32_t>(b[1]) << 8 |
                          static_cast<std::uint32_t>(b[2]) << 16 |
                          static_cast<std::uint32_t>(b[3]) << 24;
    }
  }
}

#if defined(RMSPROP_NOISE_X86)
// ---------------------------------------------------------------------------------------------
// Hardware AES. _mm_set_epi64x(high, low) is the block's little-endian byte order.

__attribute__((target("sse2,aes"))) void fill_aes_ni(const NoiseKey& key,
                                                     std::uint64_t first_quad,
                                                     std::size_t quads, std::uint32_t* out) {
  __m128i round_keys[kNoiseRounds];
  for (int j = 0; j < kNoiseRounds; ++j) {
    round_keys[j] = _mm_set_epi64x(static_cast<long long>(key.round[j][1]),
                                   static_cast<long long>(key.round[j][0]));
  }
  for (std::size_t k = 0; k < quads; ++k) {
    __m128i block = _mm_set_epi64x(static_cast<long long>(key.whitening[1]),
                                   static_cast<long long>(first_quad + k + key.whitening[0]));
    for (int j = 0; j < kNoiseRounds; ++j) block = _mm_aesenc_si128(block, round_keys[j]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4 * k), block);
  }
}

__attribute__((target("avx512f,vaes,aes"))) void fill_vaes512(const NoiseKey& key,
                                                              std::uint64_t first_quad,
                                                              std::size_t quads,
                                                              std::uint32_t* out) {
  __m512i round_keys[kNoiseRounds];
  for (int j = 0; j < kNoiseRounds; ++j) {
    round_keys[j] = _mm512_broadcast_i32x4(_mm_set_epi64x(
        static_cast<long long>(key.round[j][1]), static_cast<long long>(key.round[j][0])));
  }
  // Four blocks per register: lows first_quad + k + whitening[0] .. + 3, highs whitening[1].
  __m512i block = _mm512_add_epi64(
      _mm512_broadcast_i32x4(
          _mm_set_epi64x(static_cast<long long>(key.whitening[1]),
                         static_cast<long long>(first_quad + key.whitening[0]))),
      _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0));
  const __m512i four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
  std::size_t k = 0;
  for (; k + 4 <= quads; k += 4) {
    __m512i x = block;
    for (int j = 0; j < kNoiseRounds; ++j) x = _mm512_aesenc_epi128(x, round_keys[j]);
    _mm512_storeu_si512(out + 4 * k, x);
    block = _mm512_add_epi64(block, four);
  }
  if (k < quads) fill_aes_ni(key, first_quad + k, quads - k, out + 4 * k);
}

struct CpuAes {
  bool aes_ni = false;
  bool vaes256 = false;
  bool vaes512 = false;
};

// A feature counts only if the OS saves its registers (XCR0), as in isa.cpp.
CpuAes detect_cpu_aes() {
  CpuAes found;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(1, 0, &a, &b, &c, &d)) return found;
  found.aes_ni = (c >> 25) & 1;
  const bool osxsave = (c >> 27) & 1;
  if (!osxsave || !found.aes_ni) return found;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const bool os_avx = (lo & 0x6) == 0x6;
  const bool os_avx512 = (lo & 0xE6) == 0xE6;
  const bool avx = (c >> 28) & 1;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return found;
  const bool vaes = (c >> 9) & 1;
  found.vaes256 = os_avx && avx && vaes;
  found.vaes512 = os_avx512 && ((b >> 16) & 1) /*AVX512F*/ && vaes;
  return found;
}

const CpuAes& cpu_aes() {
  static const CpuAes found = detect_cpu_aes();
  return found;
}
#endif

using FillFn = void (*)(const NoiseKey&, std::uint64_t, std::size_t, std::uint32_t*);

FillFn fill_for(NoiseImpl impl) {
  switch (impl) {
#if defined(RMSPROP_NOISE_X86)
    case NoiseImpl::kVaes512:
      return cpu_aes().vaes512 ? &fill_vaes512 : nullptr;
    case NoiseImpl::kAesNi:
      return cpu_aes().aes_ni ? &fill_aes_ni : nullptr;
#endif
    case NoiseImpl::kSoftware:
      return &fill_software;
    default:
      return nullptr;
  }
}

FillFn best_fill() {
  for (NoiseImpl impl : {NoiseImpl::kVaes512, NoiseImpl::kAesNi}) {
    if (FillFn fill = fill_for(impl)) return fill;
  }
  return &fill_software;
}

constexpr std::uint64_t kGolden64 = 0x9E3779B97F4A7C15ull;

}  // namespace

NoiseKey make_noise_key(std::uint64_t key) {
  // Fixed round keys: they only have to differ from round to round (AES's round constants do
  // the same); the key enters through the whitening, so a tensor stepped row by row pays one
  // mix64 per row rather than ten.
  static const NoiseKey fixed = [] {
    NoiseKey k{};
    for (std::uint64_t j = 0; j < kNoiseRounds; ++j) {
      k.round[j][0] = mix64((2 * j + 1) * kGolden64);
      k.round[j][1] = mix64((2 * j + 2) * kGolden64);
    }
    return k;
  }();
  NoiseKey k = fixed;
  k.whitening[0] = key;
  k.whitening[1] = mix64(key + kGolden64);
  return k;
}

void fill_noise_words(const NoiseKey& key, std::uint64_t first_quad, std::size_t quads,
                      std::uint32_t* out) {
  static const FillFn fill = best_fill();
  fill(key, first_quad, quads, out);
}

#if defined(RMSPROP_NOISE_X86)
bool cpu_has_vaes512() { return cpu_aes().vaes512; }
bool cpu_has_vaes256() { return cpu_aes().vaes256; }
#else
bool cpu_has_vaes512() { return false; }
bool cpu_has_vaes256() { return false; }
#endif

bool noise_impl_available(NoiseImpl impl) { return fill_for(impl) != nullptr; }

void fill_noise_words_with(NoiseImpl impl, const NoiseKey& key, std::uint64_t first_quad,
                           std::size_t quads, std::uint32_t* out) {
  const FillFn fill = fill_for(impl);
  if (!fill) throw std::invalid_argument("this CPU lacks the requested noise implementation");
  fill(key, first_quad, quads, out);
}

}  // namespace detail
}  // namespace rmsprop
