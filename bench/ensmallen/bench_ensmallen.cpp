// Benchmark: one RMSProp step through rmsprop's C++ API vs ensmallen's RMSPropUpdate on the
// same arrays (64K and 16M elements, float32 and float64, 1 and 2 threads). Competitors run
// alternately within each round; medians of wall and process-CPU time per step are reported,
// with throughput per wall second and per CPU second, and our speed-up on both.
// Must not contain optimizer math of its own: each side runs its library's update.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include <armadillo>
#include <ensmallen_bits/rmsprop/rmsprop_update.hpp>
#include <rmsprop/rmsprop.hpp>
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

struct Time {
  double wall;
  double cpu;
};

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

template <class Fn>
Time timed(Fn&& fn) {
  const auto w0 = std::chrono::steady_clock::now();
  const double c0 = cpu_seconds();
  fn();
  const double c1 = cpu_seconds();
  const auto w1 = std::chrono::steady_clock::now();
  return {std::chrono::duration<double>(w1 - w0).count(), c1 - c0};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Same hyper-parameters on both sides: ensmallen's defaults (eps outside the sqrt, as torch).
constexpr double kLr = 0.01;
constexpr double kAlpha = 0.99;
constexpr double kEps = 1e-8;

template <class T>
void run(const char* dtype, std::size_t n, const char* label, int threads, int rounds, int reps) {
  arma::Col<T> p_ours = arma::randn<arma::Col<T>>(n);
  arma::Col<T> p_ens = p_ours;
  const arma::Col<T> g = T(1e-3) * arma::randn<arma::Col<T>>(n);
  arma::Col<T> v(n, arma::fill::zeros);

  rmsprop::Options o;
  o.lr = kLr;
  o.alpha = kAlpha;
  o.eps = kEps;
  rmsprop::TensorSpan<T> span;
  span.param = p_ours.memptr();
  span.grad = g.memptr();
  span.square_avg = v.memptr();
  span.size = n;
  rmsprop::set_num_threads(threads);

  ens::RMSPropUpdate update(kEps, kAlpha);
  ens::RMSPropUpdate::Policy<arma::Col<T>, arma::Col<T>> policy(update, n, 1);
#if defined(_OPENMP)
  omp_set_num_threads(threads);  // Armadillo parallelises some element-wise work with OpenMP
#endif

  std::vector<double> ours_wall, ours_cpu, ens_wall, ens_cpu;
  for (int r = -1; r < rounds; ++r) {  // round -1 is the warm-up
    for (int side = 0; side < 2; ++side) {
      std::vector<double> wall, cpu;
      for (int k = 0; k < reps; ++k) {
        const Time t = side == 0 ? timed([&] { rmsprop::step(o, &span, 1); })
                                 : timed([&] { policy.Update(p_ens, kLr, g); });
        wall.push_back(t.wall);
        cpu.push_back(t.cpu);
      }
      if (r < 0) continue;
      (side == 0 ? ours_wall : ens_wall).push_back(median(wall));
      (side == 0 ? ours_cpu : ens_cpu).push_back(median(cpu));
    }
  }
  const double ow = median(ours_wall), oc = median(ours_cpu);
  const double ew = median(ens_wall), ec = median(ens_cpu);
  const double ge = static_cast<double>(n) * 1e-9;
  std::printf("%-7s %-4s %7d | %9.1f %9.1f %7.2f %7.2f | %9.1f %9.1f %7.2f %7.2f | %6.2fx %6.2fx\n",
              dtype, label, threads, ow * 1e6, oc * 1e6, ge / ow, ge / oc, ew * 1e6, ec * 1e6,
              ge / ew, ge / ec, ew / ow, ec / oc);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int rounds = quick ? 3 : 7;
  std::printf("rmsprop (C++ API, ISA %s) vs ensmallen RMSPropUpdate; medians of %d rounds\n",
              rmsprop::isa_name(rmsprop::active_isa()).c_str(), rounds);
  std::printf("%-7s %-4s %7s | %9s %9s %7s %7s | %9s %9s %7s %7s | %7s %7s\n", "dtype", "size",
              "threads", "ours us", "cpu us", "Gel/s", "Gel/cs", "ens us", "cpu us", "Gel/s",
              "Gel/cs", "wall", "cpu");
  for (int threads : {1, 2}) {
    run<float>("float32", std::size_t{1} << 16, "64K", threads, rounds, quick ? 50 : 200);
    run<float>("float32", std::size_t{16} << 20, "16M", threads, rounds, quick ? 3 : 7);
    run<double>("float64", std::size_t{1} << 16, "64K", threads, rounds, quick ? 50 : 200);
    run<double>("float64", std::size_t{16} << 20, "16M", threads, rounds, quick ? 3 : 7);
  }
  std::printf("columns: per-step wall and CPU time, Gelem per wall second and per CPU second;\n"
              "last two: ensmallen time / ours (wall, CPU) = our speed-up\n");
  return 0;
}
