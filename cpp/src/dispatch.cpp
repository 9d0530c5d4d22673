// The driver behind rmsprop::step: per-tensor checks and the OpenMP split of the work over the
// active ISA's kernels (isa.cpp picks them; options.cpp checks options and makes coefficients). Compiled for the baseline ISA. Must
// not contain intrinsics or element-wise math (that is the kernel's job) and nothing
// Python-specific.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <limits>
#include <optional>
#include <utility>
#include <string>
#include <type_traits>
#include <vector>

#include "driver.hpp"
#include "fp_env.hpp"
#include "kernel.hpp"
#include "rmsprop/rmsprop.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define RMSPROP_HAVE_ATFORK 1
#endif

namespace rmsprop {
namespace {

using detail::Coefficients;
using detail::KernelTable;
using detail::MomentumMode;
using detail::Variant;
using detail::WeightDecayMode;

constexpr std::size_t kCacheLineBytes = 64;
// Below this many elements per thread a second thread costs more than it saves: a step runs at
// roughly 1-3 elements per ns, and an OpenMP fork/join costs a few microseconds.
constexpr std::size_t kParallelGrainElements = std::size_t{1} << 15;


// ---------------------------------------------------------------------------------------------
// Threads.

std::atomic<int> requested_threads{0};  // 0: not chosen yet, use the OpenMP default

// libgomp's thread pool does not survive fork(): a child that enters a parallel region while
// the forking thread's pool had workers waits forever for threads that no longer exist. The
// runtime is shared by every library in the process (torch, anything built with -fopenmp), so
// whether *some* pool existed at the fork cannot be known here. A process created by fork()
// after this library was loaded therefore runs every step on one thread, for its whole life,
// and so do the children it forks (they inherit the stale pool). exec() starts afresh.
#if defined(RMSPROP_HAVE_ATFORK)
std::atomic<bool> forked_child{false};

void mark_forked_child() { forked_child.store(true, std::memory_order_relaxed); }

// Registered when the library is loaded, before anything can go parallel through it.
const bool atfork_registered = [] {
  return pthread_atfork(nullptr, nullptr, &mark_forked_child) == 0;
}();

bool may_go_parallel() {
  // If registration failed (out of memory at load) no fork can be told apart: stay serial.
  return atfork_registered && !forked_child.load(std::memory_order_relaxed);
}
#else
bool may_go_parallel() { return true; }
#endif

using detail::require;

// Lays the tensors end to end, each padded to whole cache lines, and gives every thread one
// contiguous slice of that line-aligned index space. Chunk borders therefore fall on cache-line
// borders inside each tensor, so no two threads write the same line.
// kLine counts parameter elements; for 16-bit params their float state then spans two whole
// lines, so borders stay line-aligned in every buffer.
// Compact state changes the unit (granule): bfloat16 state of float params needs 32 elements
// for a whole line, and 8-bit state whole blocks of 256, whose scale one thread must own.
template <class Span>
std::size_t split_granule(const Span* tensors, std::size_t count) {
  constexpr std::size_t kLine =
      kCacheLineBytes / sizeof(std::remove_pointer_t<decltype(Span::param)>);
  std::size_t granule = kLine;
  for (std::size_t k = 0; k < count; ++k) {
    if (tensors[k].state_dtype == StateDtype::kEightBit) return kEightBitBlock;
    if (tensors[k].state_dtype == StateDtype::kBfloat16) granule = std::max<std::size_t>(kLine, 32);
  }
  return granule;
}

template <class Span>
struct WorkSplit {
  const std::size_t granule;         // elements per unit of work (whole cache lines)
  std::vector<std::size_t> offsets;  // padded start of each tensor; offsets.back() is the total

  WorkSplit(const Span* tensors, std::size_t count)
      : granule(split_granule(tensors, count)), offsets(count + 1, 0) {
    for (std::size_t k = 0; k < count; ++k) {
      offsets[k + 1] = offsets[k] + (tensors[k].size + granule - 1) / granule * granule;
    }
  }
  std::size_t total() const { return offsets.back(); }

  template <class Fn>
  void for_slice(int slice, int slices, Fn&& fn) const {
    const std::size_t lines = total() / granule;
    const std::size_t begin = lines * slice / slices * granule;
    const std::size_t end = lines * (slice + 1) / slices * granule;
    auto k = static_cast<std::size_t>(
        std::upper_bound(offsets.begin(), offsets.end(), begin) - offsets.begin() - 1);
    for (; k + 1 < offsets.size() && offsets[k] < end; ++k) {
      const std::size_t local_begin = std::max(begin, offsets[k]) - offsets[k];
      const std::size_t local_end = std::min(end, offsets[k + 1]) - offsets[k];
      fn(k, local_begin, local_end);
    }
  }
};

int threads_for(std::size_t elements) {
  const int wanted = num_threads();
  if (wanted <= 1 || elements < 2 * kParallelGrainElements) return 1;
  const std::size_t by_grain = elements / kParallelGrainElements;
  return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(wanted), by_grain));
}

// Runs fn(tensor_index, begin, end) over all elements, on one thread or split across several.
template <class Span, class Fn>
void run_split(const Span* tensors, std::size_t count, Fn&& fn) {
  std::size_t elements = 0;
  for (std::size_t k = 0; k < count; ++k) elements += tensors[k].size;
  const int threads = threads_for(elements);
  if (threads <= 1 || !may_go_parallel()) {
    const detail::IeeeEnvironment ieee;
    for (std::size_t k = 0; k < count; ++k) fn(k, std::size_t{0}, tensors[k].size);
    return;
  }
  const WorkSplit<Span> split(tensors, count);
  const auto clipped = [&](std::size_t k, std::size_t b, std::size_t e) {
    e = std::min(e, tensors[k].size);
    if (b < e) fn(k, b, e);
  };
  // Every thread sets the environment itself: pool threads keep whatever they were created
  // with, and the caller's FTZ/DAZ would otherwise apply to its chunk only.
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
  {
    const detail::IeeeEnvironment ieee;
    split.for_slice(omp_get_thread_num(), omp_get_num_threads(), clipped);
  }
#else
  const detail::IeeeEnvironment ieee;
  split.for_slice(0, 1, clipped);
#endif
}

// The buffers a tensor with compact state needs (SPEC §8); float64 params keep float64 state.
template <class Span, class Name>
void check_compact(const Options& options, const Span& t, const Name& tensor) {
  using State = std::remove_pointer_t<decltype(Span::square_avg)>;
  require(std::is_same_v<State, float>, [&] {
    return tensor() + ": state_dtype bfloat16/8bit needs float32, float16 or bfloat16 params; "
                      "float64 params keep float64 state";
  });
  const CompactState& c = t.compact;
  const bool eight_bit = t.state_dtype == StateDtype::kEightBit;
  require(t.state_dtype == StateDtype::kBfloat16 || eight_bit,
          [&] { return tensor() + ": unknown state_dtype"; });
  require(t.param && t.grad, [&] { return tensor() + ": param and grad are required"; });
  require(eight_bit ? (c.square_avg_codes && c.square_avg_scales) : c.square_avg != nullptr,
          [&] { return tensor() + ": the compact square_avg buffer is missing"; });
  require(!(eight_bit && options.centered), [&] {
    return tensor() + ": centered=True is not supported with 8-bit state (v - grad_avg^2 "
                      "would cancel in 8 bits); use state_dtype bfloat16";
  });
  require(!eight_bit || t.index_offset % kEightBitBlock == 0, [&] {
    return tensor() + ": 8-bit state must start on a block border (index_offset a multiple "
                      "of 256)";
  });
  require(!options.centered || c.grad_avg,
          [&] { return tensor() + ": centered=True needs a grad_avg buffer"; });
  require(options.momentum == 0.0 || c.momentum_buffer,
          [&] { return tensor() + ": momentum > 0 needs a momentum_buffer"; });
}

// The kernel sums addends in its compute precision (float for float32 params, whatever their
// state is stored in) only where that is the gradients' own: a 16-bit gradient sum must be
// rounded to 16 bits first, so those hosts sum themselves.
template <class Span, class Name>
void check_addends(const Span& t, const Name& tensor) {
  using P = std::remove_const_t<std::remove_pointer_t<decltype(Span::grad)>>;
  require(sizeof(P) >= 4, [&] {
    return tensor() + ": grad_addends need float32 or float64 params (16-bit gradients must "
                      "be summed and rounded first)";
  });
  const auto end = t.grad_addends + t.grad_addend_count;
  require(t.grad_addends && std::find(t.grad_addends, end, nullptr) == end,
          [&] { return tensor() + ": grad_addends holds a null pointer"; });
}

template <class P>
void step_impl(const Options& options, const TensorSpan<P, detail::StateT<P>>* tensors,
               std::size_t count) {
  using T = detail::StateT<P>;
  // The coefficients too: under DAZ/FTZ a subnormal lr or 1 - alpha^t would round to 0.
  const detail::IeeeEnvironment ieee;
  validate(options);
  for (std::size_t k = 0; k < count; ++k) {
    const auto& t = tensors[k];
    if (t.size == 0) continue;
    const auto tensor = [k] { return "tensor " + std::to_string(k); };
    if (t.grad_addend_count > 0) check_addends(t, tensor);
    if (t.state_dtype != StateDtype::kFloat) {
      check_compact(options, t, tensor);
      continue;
    }
    require(t.param && t.grad && t.square_avg,
            [&] { return tensor() + ": param, grad and square_avg are required"; });
    require(!options.centered || t.grad_avg,
            [&] { return tensor() + ": centered=True needs a grad_avg buffer"; });
    require(options.momentum == 0.0 || t.momentum_buffer,
            [&] { return tensor() + ": momentum > 0 needs a momentum_buffer"; });
  }
  const Variant variant = detail::variant_of(options);
  // Coefficients differ between tensors only through the step count (bias correction) and the
  // tensor's stochastic-rounding stream.
  // Compact state is rounded stochastically, keyed on the tensor's stream and step.
  const bool per_tensor =
      options.bias_correction || (options.stochastic_rounding && std::is_same_v<P, bfloat16>) ||
      std::any_of(tensors, tensors + count,
                  [](const auto& t) { return t.state_dtype != StateDtype::kFloat; });
  std::vector<Coefficients<T>> coefficients;
  coefficients.reserve(per_tensor ? count : 1);
  if (per_tensor) {
    for (std::size_t k = 0; k < count; ++k) {
      coefficients.push_back(
          detail::coefficients_of<T>(options, tensors[k].step, tensors[k].rounding_stream));
    }
  } else {
    coefficients.push_back(detail::coefficients_of<T>(options, 1, 0));
  }
  const detail::UpdateRangeFn<P> kernel = detail::active_kernel_table().update<P>();
  run_split(tensors, count, [&](std::size_t k, std::size_t b, std::size_t e) {
    kernel(variant, coefficients[per_tensor ? k : 0], tensors[k], b, e);
  });
}

template <class P>
bool grads_finite_impl(const TensorSpan<P, detail::StateT<P>>* tensors, std::size_t count) {
  for (std::size_t k = 0; k < count; ++k) {
    require(tensors[k].grad_addend_count == 0, [k] {
      return "tensor " + std::to_string(k) + ": grads_finite cannot check a span with "
             "grad_addends (a sum of finite terms can overflow); check the summed gradient";
    });
  }
  const detail::FiniteRangeFn<P> finite = detail::active_kernel_table().finite<P>();
  std::atomic<bool> all_finite{true};
  run_split(tensors, count, [&](std::size_t k, std::size_t b, std::size_t e) {
    if (!finite(tensors[k].grad, b, e)) all_finite.store(false, std::memory_order_relaxed);
  });
  return all_finite.load();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API.

void step(const Options& options, const TensorSpan<float>* tensors, std::size_t count) {
  step_impl<float>(options, tensors, count);
}
void step(const Options& options, const TensorSpan<double>* tensors, std::size_t count) {
  step_impl<double>(options, tensors, count);
}
void step(const Options& options, const TensorSpan<float16, float>* tensors, std::size_t count) {
  step_impl<float16>(options, tensors, count);
}
void step(const Options& options, const TensorSpan<bfloat16, float>* tensors, std::size_t count) {
  step_impl<bfloat16>(options, tensors, count);
}

bool grads_finite(const TensorSpan<float>* tensors, std::size_t count) {
  return grads_finite_impl<float>(tensors, count);
}
bool grads_finite(const TensorSpan<double>* tensors, std::size_t count) {
  return grads_finite_impl<double>(tensors, count);
}
bool grads_finite(const TensorSpan<float16, float>* tensors, std::size_t count) {
  return grads_finite_impl<float16>(tensors, count);
}
bool grads_finite(const TensorSpan<bfloat16, float>* tensors, std::size_t count) {
  return grads_finite_impl<bfloat16>(tensors, count);
}


bool openmp_enabled() {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

int num_threads() {
  const int requested = requested_threads.load(std::memory_order_relaxed);
  if (requested > 0) return requested;
#if defined(_OPENMP)
  // omp_get_max_threads() honours OMP_NUM_THREADS and otherwise is the core count; it reads
  // the environment but starts no threads.
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

void set_num_threads(int threads) {
  require(threads >= 1,
          [&] { return "the number of threads must be >= 1, got " + std::to_string(threads); });
  requested_threads.store(threads, std::memory_order_relaxed);
}

std::size_t parallel_grain() { return kParallelGrainElements; }

void roofline_pass(float* p, const float* g, float* v, std::size_t size) {
  TensorSpan<float> whole;
  whole.param = p;
  whole.grad = g;
  whole.square_avg = v;
  whole.size = size;
  const auto kernel = detail::active_kernel_table().roofline;
  run_split(&whole, 1, [&](std::size_t, std::size_t b, std::size_t e) { kernel(p, g, v, b, e); });
}

// ---------------------------------------------------------------------------------------------
// Shared with the other drivers (driver.hpp).

namespace detail {

int threads_for_work(std::size_t elements) {
  const int threads = threads_for(elements);
  return threads > 1 && may_go_parallel() ? threads : 1;
}

}  // namespace detail

}  // namespace rmsprop
