// The lazy (row-sparse) step behind rmsprop::step_rows: checks the row indices, merges repeated
// rows and runs the dense kernel on each touched row, in parallel over rows. Compiled for the
// baseline ISA. Must not contain the update math (the kernel's job) or anything Python-specific.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "driver.hpp"
#include "fp_env.hpp"
#include "kernel.hpp"
#include "rmsprop/rmsprop.hpp"
#include "rmsprop/rows.hpp"

// Only for its software 16-bit conversions: the same round-to-nearest-even as the kernels'
// stores, so a merged 16-bit row holds exactly the value a dense 16-bit gradient would.
#define RMSPROP_ISA_NS rows_merge
#include "simd.hpp"
#undef RMSPROP_ISA_NS

namespace rmsprop {
namespace {

using detail::StateT;

constexpr std::size_t kEnd = std::numeric_limits<std::size_t>::max();

// The touched rows in order of first appearance and, for each, the chain of its occurrences
// in `indices`. Built with an open-addressing hash table of about 2k slots, so the cost is
// O(k) whatever the number of rows in the table: nothing is sorted, nothing of size R exists.
struct RowPlan {
  std::vector<std::int64_t> rows;   // unique rows
  std::vector<std::size_t> first;   // position of each unique row's first occurrence
  std::vector<std::size_t> next;    // per position: the next occurrence of its row, or kEnd
};

// Key and id side by side: a probe touches one cache line of a table that for large k lives
// outside the fast caches.
struct Slot {
  std::int64_t row;
  std::size_t id;  // unique row id, or kEnd for an empty slot
};

// Planning buffers kept per calling thread between steps: allocated afresh, their pages would
// be faulted in (and zeroed by the kernel) on every step, which cost as much as the plan.
struct Workspace {
  std::vector<Slot> slots;
  std::vector<std::size_t> last;  // latest occurrence of each unique row
  std::vector<RowPlan> plans;     // one per tensor of the call
};

Workspace& workspace() {
  thread_local Workspace w;
  return w;
}

// Touched rows are scattered over a table far larger than the caches, so each row's first
// access would wait a full memory latency: the hardware prefetcher cannot guess the next row.
// Rows this far ahead are prefetched while the current one is updated.
constexpr std::size_t kPrefetchRows = 8;
// Lines prefetched per row and buffer; past these the hardware prefetcher has caught on.
constexpr std::size_t kPrefetchLines = 16;

template <class T>
inline void prefetch_row(const T* row, std::size_t row_size) {
  if (row == nullptr) return;
  const auto* bytes = reinterpret_cast<const char*>(row);
  const std::size_t lines = std::min(kPrefetchLines, (row_size * sizeof(T) + 63) / 64);
  for (std::size_t l = 0; l < lines; ++l) __builtin_prefetch(bytes + 64 * l, 1, 3);
}

std::string describe(std::size_t k) { return "tensor " + std::to_string(k); }

// Plans tensor k's rows, refusing any index outside [0, rows). Each index is read once, here:
// the update then uses only the plan's copy, so a caller changing the indices meanwhile
// cannot make it write outside the tensor.
template <class Span>
void plan_rows(const Span& t, std::size_t k, Workspace& w, RowPlan& plan) {
  const std::int64_t* indices = t.indices;
  const std::size_t count = t.count;
  plan.rows.clear();
  plan.first.clear();
  plan.next.assign(count, kEnd);
  int bits = 4;
  while ((std::size_t{1} << bits) < 2 * count) ++bits;
  const std::size_t mask = (std::size_t{1} << bits) - 1;
  std::vector<Slot>& slots = w.slots;
  slots.assign(mask + 1, Slot{0, kEnd});
  std::vector<std::size_t>& last = w.last;
  last.clear();
  for (std::size_t i = 0; i < count; ++i) {
    const std::int64_t row = indices[i];
    if (row < 0 || static_cast<std::uint64_t>(row) >= t.rows) {
      throw std::invalid_argument(describe(k) + ": indices[" + std::to_string(i) + "] = " +
                                  std::to_string(row) + " is out of range for " +
                                  std::to_string(t.rows) + " rows");
    }
    // Fibonacci hashing: the top bits of row * 2^64/phi spread runs of rows evenly.
    std::size_t h = (static_cast<std::uint64_t>(row) * 0x9E3779B97F4A7C15ull) >> (64 - bits);
    while (slots[h].id != kEnd && slots[h].row != row) h = (h + 1) & mask;
    if (slots[h].id == kEnd) {
      slots[h] = Slot{row, plan.rows.size()};
      plan.rows.push_back(row);
      plan.first.push_back(i);
      last.push_back(i);
    } else {
      const std::size_t j = slots[h].id;
      plan.next[last[j]] = i;
      last[j] = i;
    }
  }
}

// 16-bit values are summed in float and rounded once; float and double in their own type.
inline float widen(float16 x) { return detail::rows_merge::half_to_float(x.bits); }
inline float widen(bfloat16 x) { return detail::rows_merge::bfloat16_to_float(x.bits); }
inline float widen(float x) { return x; }
inline double widen(double x) { return x; }
inline void narrow(float x, float16* out) { out->bits = detail::rows_merge::float_to_half(x); }
inline void narrow(float x, bfloat16* out) {
  out->bits = detail::rows_merge::float_to_bfloat16(x);
}
inline void narrow(float x, float* out) { *out = x; }
inline void narrow(double x, double* out) { *out = x; }

// One thread's room for a merged row.
template <class P>
struct Scratch {
  std::vector<StateT<P>> sum;
  std::vector<P> row;
  explicit Scratch(std::size_t row_size) : sum(row_size), row(row_size) {}
};

// The gradient row of unique row j: the caller's values when the row occurs once, else the sum
// of its occurrences in order of appearance, ((v_a + v_b) + v_c) ..., written to scratch.
template <class P>
const P* merged_row(const RowSparseSpan<P, StateT<P>>& t, const RowPlan& plan, std::size_t j,
                    Scratch<P>& scratch) {
  const std::size_t n = t.row_size;
  const std::size_t first = plan.first[j];
  const P* values = t.values + first * n;
  if (plan.next[first] == kEnd) return values;
  StateT<P>* sum = scratch.sum.data();
  for (std::size_t e = 0; e < n; ++e) sum[e] = widen(values[e]);
  for (std::size_t i = plan.next[first]; i != kEnd; i = plan.next[i]) {
    const P* more = t.values + i * n;
    for (std::size_t e = 0; e < n; ++e) sum[e] = sum[e] + widen(more[e]);
  }
  P* out = scratch.row.data();
  for (std::size_t e = 0; e < n; ++e) narrow(sum[e], out + e);
  return out;
}

// The buffers of a tensor with compact state. Only bfloat16 state is element-wise: 8-bit state
// shares one scale per block of 256 elements, the largest v of the block, so a lazy update of
// some rows would re-quantize the untouched rows of their blocks.
template <class P>
void check_compact_rows(const Options& options, const RowSparseSpan<P, StateT<P>>& t,
                        std::size_t k) {
  if (t.state_dtype == StateDtype::kEightBit) {
    throw std::invalid_argument(
        describe(k) + ": 8-bit state cannot be updated row by row (a block's scale depends on "
        "all 256 of its elements, so untouched rows would be re-quantized); use bfloat16 or "
        "float state, or a dense gradient");
  }
  if (t.state_dtype != StateDtype::kBfloat16) {
    throw std::invalid_argument(describe(k) + ": unknown state_dtype");
  }
  if (!std::is_same_v<StateT<P>, float>) {
    throw std::invalid_argument(describe(k) + ": bfloat16 state needs float32, float16 or "
                                "bfloat16 params; float64 params keep float64 state");
  }
  const CompactState& c = t.compact;
  if (!t.param || !c.square_avg) {
    throw std::invalid_argument(describe(k) + ": param and the bfloat16 square_avg are required");
  }
  if (options.centered && !c.grad_avg) {
    throw std::invalid_argument(describe(k) + ": centered=True needs a grad_avg buffer");
  }
  if (options.momentum != 0.0 && !c.momentum_buffer) {
    throw std::invalid_argument(describe(k) + ": momentum > 0 needs a momentum_buffer");
  }
}

// Checks every tensor (buffers only when options are given) and plans its rows; throws
// before anything is written.
template <class P>
const std::vector<RowPlan>& checked_plans(const Options* options,
                                          const RowSparseSpan<P, StateT<P>>* tensors,
                                          std::size_t count) {
  Workspace& w = workspace();
  std::vector<RowPlan>& plans = w.plans;
  if (plans.size() < count) plans.resize(count);
  for (std::size_t k = 0; k < count; ++k) {
    const auto& t = tensors[k];
    if (t.count > 0 && (!t.indices || (t.row_size > 0 && !t.values))) {
      throw std::invalid_argument(describe(k) + ": indices and values are required");
    }
    plan_rows(t, k, w, plans[k]);
    if (t.count == 0) continue;
    if (t.row_size == 0 || options == nullptr) continue;
    if (t.state_dtype != StateDtype::kFloat) {
      check_compact_rows(*options, t, k);
      continue;
    }
    if (!t.param || !t.square_avg) {
      throw std::invalid_argument(describe(k) + ": param and square_avg are required");
    }
    if (options->centered && !t.grad_avg) {
      throw std::invalid_argument(describe(k) + ": centered=True needs a grad_avg buffer");
    }
    if (options->momentum != 0.0 && !t.momentum_buffer) {
      throw std::invalid_argument(describe(k) + ": momentum > 0 needs a momentum_buffer");
    }
  }
  return plans;
}

// Runs fn(j, scratch) for every unique row j, split in contiguous blocks of rows across the
// threads the amount of work is worth. Rows are disjoint, so the split never changes a bit.
template <class P, class Fn>
void for_each_row(std::size_t unique, std::size_t row_size, Fn&& fn) {
#if defined(_OPENMP)
  const int threads = detail::threads_for_work(unique * row_size);
  if (threads > 1) {
    const auto n = static_cast<long long>(unique);
#pragma omp parallel num_threads(threads)
    {
      // Every thread runs under the IEEE environment, whatever FTZ/DAZ its creator had set.
      const detail::IeeeEnvironment ieee;
      Scratch<P> scratch(row_size);
#pragma omp for schedule(static)
      for (long long j = 0; j < n; ++j) fn(static_cast<std::size_t>(j), scratch);
    }
    return;
  }
#endif
  Scratch<P> scratch(row_size);
  for (std::size_t j = 0; j < unique; ++j) fn(j, scratch);
}

template <class P>
void step_rows_impl(const Options& options, const RowSparseSpan<P, StateT<P>>* tensors,
                    std::size_t count) {
  using T = StateT<P>;
  // The serial path, the coefficients and the duplicate sums run under IEEE rules too.
  const detail::IeeeEnvironment ieee;
  validate(options);
  const std::vector<RowPlan>& plans = checked_plans<P>(&options, tensors, count);
  const detail::Variant variant = detail::variant_of(options);
  const detail::UpdateRangeFn<P> kernel = detail::active_kernel_table().update<P>();
  for (std::size_t k = 0; k < count; ++k) {
    const auto& t = tensors[k];
    if (t.count == 0 || t.row_size == 0) continue;
    const RowPlan& plan = plans[k];
    const detail::Coefficients<T> coefficients =
        detail::coefficients_of<T>(options, t.step, t.rounding_stream);
    const std::size_t n = t.row_size;
    const auto at = [&](auto* buffer, std::size_t offset) {
      return buffer ? buffer + offset : nullptr;
    };
    const std::size_t unique = plan.rows.size();
    const bool compact = t.state_dtype != StateDtype::kFloat;
    for_each_row<P>(unique, n, [&](std::size_t j, Scratch<P>& scratch) {
      if (j + kPrefetchRows < unique) {
        const std::size_t ahead = static_cast<std::size_t>(plan.rows[j + kPrefetchRows]) * n;
        prefetch_row(t.param + ahead, n);
        if (compact) {
          prefetch_row(t.compact.square_avg + ahead, n);
          prefetch_row(at(t.compact.grad_avg, ahead), n);
          prefetch_row(at(t.compact.momentum_buffer, ahead), n);
        } else {
          prefetch_row(at(t.square_avg, ahead), n);
          prefetch_row(at(t.grad_avg, ahead), n);
          prefetch_row(at(t.momentum_buffer, ahead), n);
        }
        prefetch_row(at(t.master_param, ahead), n);
        prefetch_row(t.values + plan.first[j + kPrefetchRows] * n, n);
      }
      // A span over one row whose index_offset is the row's place in the whole tensor, so
      // stochastic rounding draws the noise a dense step would.
      const std::size_t offset = static_cast<std::size_t>(plan.rows[j]) * n;
      TensorSpan<P, T> row;
      row.param = t.param + offset;
      row.grad = merged_row(t, plan, j, scratch);
      row.square_avg = at(t.square_avg, offset);
      row.grad_avg = options.centered ? at(t.grad_avg, offset) : nullptr;
      row.momentum_buffer = options.momentum > 0.0 ? at(t.momentum_buffer, offset) : nullptr;
      row.master_param = at(t.master_param, offset);
      row.size = n;
      row.step = t.step;
      row.rounding_stream = t.rounding_stream;
      row.index_offset = offset;
      if (compact) {
        // Element-wise bfloat16 state: the row's slice of each buffer, rounded with the noise
        // of its elements' whole-tensor indices (index_offset), as in a dense step.
        row.square_avg = nullptr;
        row.grad_avg = nullptr;
        row.momentum_buffer = nullptr;
        row.state_dtype = t.state_dtype;
        row.compact.square_avg = t.compact.square_avg + offset;
        row.compact.grad_avg = options.centered ? at(t.compact.grad_avg, offset) : nullptr;
        row.compact.momentum_buffer =
            options.momentum > 0.0 ? at(t.compact.momentum_buffer, offset) : nullptr;
      }
      kernel(variant, coefficients, row, 0, n);
    });
  }
}

template <class P>
bool row_grads_finite_impl(const RowSparseSpan<P, StateT<P>>* tensors, std::size_t count) {
  const detail::FiniteRangeFn<P> finite = detail::active_kernel_table().finite<P>();
  const std::vector<RowPlan>& plans = checked_plans<P>(nullptr, tensors, count);
  for (std::size_t k = 0; k < count; ++k) {
    const auto& t = tensors[k];
    if (t.count == 0 || t.row_size == 0) continue;
    const RowPlan& plan = plans[k];
    std::vector<unsigned char> row_finite(plan.rows.size(), 1);
    for_each_row<P>(plan.rows.size(), t.row_size, [&](std::size_t j, Scratch<P>& scratch) {
      row_finite[j] = finite(merged_row(t, plan, j, scratch), 0, t.row_size) ? 1 : 0;
    });
    if (std::find(row_finite.begin(), row_finite.end(), 0) != row_finite.end()) return false;
  }
  return true;
}

}  // namespace

void step_rows(const Options& options, const RowSparseSpan<float>* tensors, std::size_t count) {
  step_rows_impl<float>(options, tensors, count);
}
void step_rows(const Options& options, const RowSparseSpan<double>* tensors, std::size_t count) {
  step_rows_impl<double>(options, tensors, count);
}
void step_rows(const Options& options, const RowSparseSpan<float16, float>* tensors,
               std::size_t count) {
  step_rows_impl<float16>(options, tensors, count);
}
void step_rows(const Options& options, const RowSparseSpan<bfloat16, float>* tensors,
               std::size_t count) {
  step_rows_impl<bfloat16>(options, tensors, count);
}

bool row_grads_finite(const RowSparseSpan<float>* tensors, std::size_t count) {
  return row_grads_finite_impl<float>(tensors, count);
}
bool row_grads_finite(const RowSparseSpan<double>* tensors, std::size_t count) {
  return row_grads_finite_impl<double>(tensors, count);
}
bool row_grads_finite(const RowSparseSpan<float16, float>* tensors, std::size_t count) {
  return row_grads_finite_impl<float16>(tensors, count);
}
bool row_grads_finite(const RowSparseSpan<bfloat16, float>* tensors, std::size_t count) {
  return row_grads_finite_impl<bfloat16>(tensors, count);
}

}  // namespace rmsprop
