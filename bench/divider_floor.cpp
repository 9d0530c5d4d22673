// The divider's floor under every RMSProp step: one square root, one addition and one division
// per element (SPEC §2's sqrt(v) + eps and g / that), on 16-lane AVX-512 registers, 8
// independent chains so that only the unit's throughput counts. CPU time, median of 5.
//   g++ -O2 -march=native bench/divider_floor.cpp -o /tmp/divider_floor && /tmp/divider_floor
// Per thread, no step can run faster than this; with 2 threads, a 16M-element step cannot
// take less than 16.8M * floor / 2.
#include <immintrin.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <vector>

static double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

int main() {
  constexpr int kChains = 8;
  constexpr long kIterations = 20000000;
  __m512 x[kChains];
  const __m512 one = _mm512_set1_ps(1.0f), eps = _mm512_set1_ps(1e-8f);
  for (int k = 0; k < kChains; ++k) x[k] = _mm512_set1_ps(1.5f + static_cast<float>(k));
  std::vector<double> ns;
  for (int round = 0; round < 5; ++round) {
    const double start = cpu_seconds();
    for (long i = 0; i < kIterations; ++i) {
      for (int k = 0; k < kChains; ++k) {
        x[k] = _mm512_div_ps(one, _mm512_add_ps(_mm512_sqrt_ps(x[k]), eps));
      }
      // Keeps the chains in registers and the loop from being folded away.
      asm volatile("" : "+v"(x[0]), "+v"(x[1]), "+v"(x[2]), "+v"(x[3]), "+v"(x[4]), "+v"(x[5]),
                   "+v"(x[6]), "+v"(x[7]));
    }
    ns.push_back((cpu_seconds() - start) / (kIterations * kChains * 16.0) * 1e9);
  }
  std::sort(ns.begin(), ns.end());
  float lanes[16];
  _mm512_storeu_ps(lanes, x[0]);
  std::printf("sqrt + add + div: %.3f ns per element per thread (median of 5; %g)\n", ns[2],
              static_cast<double>(lanes[0]));
  return 0;
}
