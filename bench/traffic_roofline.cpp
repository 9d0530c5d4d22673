// What the memory system gives each traffic pattern of the step, with no math to speak of: the
// float32-state step's 20 bytes per element (read p, g, v; write p, v) against the 8-bit
// state's 14 (read p, g and a byte of code; write p and the code), with and without software
// prefetch, 16M elements on OpenMP threads, side by side, median of the rounds. The ratio of the
// two patterns' times is the most any 8-bit step can gain over the float32 one on this machine.
//   g++ -O2 -march=native -fopenmp bench/traffic_roofline.cpp -o /tmp/traffic_roofline
//   OMP_NUM_THREADS=2 /tmp/traffic_roofline
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <class F>
void on_threads(std::size_t n, F pass) {
#pragma omp parallel
  {
    const auto t = static_cast<std::size_t>(omp_get_thread_num());
    const auto threads = static_cast<std::size_t>(omp_get_num_threads());
    const std::size_t chunk = (n / threads) & ~std::size_t{255};
    pass(t * chunk, t + 1 == threads ? n : (t + 1) * chunk);
  }
}

constexpr std::size_t kAhead = 512;  // elements, as the step's vector loop

void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

void float_traffic(float* p, const float* g, float* v, std::size_t b, std::size_t e,
                   bool ahead) {
  const __m512 half = _mm512_set1_ps(0.5f);
  for (std::size_t i = b; i < e; i += 16) {
    if (ahead) {
      prefetch(g + i + kAhead);
      prefetch(p + i + kAhead);
      prefetch(v + i + kAhead);
    }
    const __m512 gi = _mm512_load_ps(g + i);
    _mm512_store_ps(v + i, _mm512_add_ps(_mm512_load_ps(v + i), gi));
    _mm512_store_ps(p + i, _mm512_sub_ps(_mm512_load_ps(p + i), _mm512_mul_ps(half, gi)));
  }
}

void code_traffic(float* p, const float* g, std::uint8_t* codes, std::size_t b, std::size_t e,
                  bool ahead) {
  const __m512 half = _mm512_set1_ps(0.5f);
  for (std::size_t i = b; i < e; i += 16) {
    if (ahead) {
      prefetch(g + i + kAhead);
      prefetch(p + i + kAhead);
      if (i % 64 == 0) prefetch(codes + i + kAhead);
    }
    const __m512 gi = _mm512_load_ps(g + i);
    const __m128i* c = reinterpret_cast<const __m128i*>(codes + i);
    const __m512i code = _mm512_add_epi32(_mm512_cvtepu8_epi32(_mm_load_si128(c)),
                                          _mm512_srli_epi32(_mm512_castps_si512(gi), 28));
    _mm_store_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtusepi32_epi8(code));
    _mm512_store_ps(p + i, _mm512_sub_ps(_mm512_load_ps(p + i), _mm512_mul_ps(half, gi)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = std::size_t{16} << 20;
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 40;
  auto* p = static_cast<float*>(std::aligned_alloc(64, 4 * n));
  auto* g = static_cast<float*>(std::aligned_alloc(64, 4 * n));
  auto* v = static_cast<float*>(std::aligned_alloc(64, 4 * n));
  auto* codes = static_cast<std::uint8_t*>(std::aligned_alloc(64, n + kAhead));
  on_threads(n, [&](std::size_t b, std::size_t e) {  // first touch on the thread that streams it
    for (std::size_t i = b; i < e; ++i) {
      p[i] = 0.0f;
      g[i] = static_cast<float>(i % 7) * 1e-3f;
      v[i] = 0.0f;
      codes[i] = 0;
    }
  });
  const char* names[] = {"float32 state (20 B/el)", "float32 state, prefetch",
                         "8-bit state (14 B/el)", "8-bit state, prefetch"};
  std::vector<double> times[4];
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 4; ++k) {
      const bool ahead = k % 2 == 1;
      const double start = now();
      on_threads(n, [&](std::size_t b, std::size_t e) {
        if (k < 2) {
          float_traffic(p, g, v, b, e, ahead);
        } else {
          code_traffic(p, g, codes, b, e, ahead);
        }
      });
      times[k].push_back(now() - start);
    }
  }
  double median[4];
  for (int k = 0; k < 4; ++k) {
    std::sort(times[k].begin(), times[k].end());
    median[k] = times[k][times[k].size() / 2] * 1e3;
  }
  const double fastest_float = std::min(median[0], median[1]);
  std::printf("%d threads, 16M elements, median of %d rounds\n", omp_get_max_threads(), rounds);
  for (int k = 0; k < 4; ++k) {
    std::printf("%-26s %6.2f ms   fastest float32 pass / this: %.2f\n", names[k], median[k],
                fastest_float / median[k]);
  }
  std::free(p);
  std::free(g);
  std::free(v);
  std::free(codes);
  return 0;
}
