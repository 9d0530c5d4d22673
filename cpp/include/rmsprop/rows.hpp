// Public C++ API of sparse row updates (embedding tables): a step that touches only the rows a
// row-sparse gradient names. Must not contain intrinsics, OpenMP or Python.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rmsprop/rmsprop.hpp"

namespace rmsprop {

// A tensor of `rows` rows of `row_size` contiguous elements (param and every state buffer hold
// rows * row_size elements, as for a dense step) and a row-sparse gradient: `count` row
// indices and a `count` x `row_size` block of values, row i of the block belonging to row
// indices[i] of the tensor. Indices may repeat and come in any order.
// State buffers, master_param, step, rounding_stream, state_dtype and compact mean what they
// mean in TensorSpan. Compact state may be kBfloat16 (element-wise, so a row is updated as in a
// dense step); kEightBit is refused: a block's scale is the largest v of all its 256 elements,
// so updating some rows would re-quantize the untouched ones sharing their blocks.
template <class P, class S = P>
struct RowSparseSpan {
  P* param = nullptr;
  S* square_avg = nullptr;
  S* grad_avg = nullptr;
  S* momentum_buffer = nullptr;
  S* master_param = nullptr;
  std::size_t rows = 0;
  std::size_t row_size = 0;
  const std::int64_t* indices = nullptr;
  const P* values = nullptr;
  std::size_t count = 0;
  std::int64_t step = 1;
  std::uint64_t rounding_stream = 0;
  StateDtype state_dtype = StateDtype::kFloat;
  CompactState compact;  // used when state_dtype is kBfloat16
};

// The lazy step: rows named in `indices` are updated, every other row of param and state is
// left untouched. Repeated indices are merged first: their values are summed in order of
// appearance, ((v_a + v_b) + v_c) ..., in the state precision (float32 for 16-bit params) and
// rounded once to the param's dtype. The result is bit for bit that of step() with a dense
// gradient holding those sums in the touched rows, restricted to those rows, on every ISA and
// thread count. Throws std::invalid_argument (changing nothing) when an index is negative or
// >= rows, a required buffer is missing, state_dtype is kEightBit, or an option is invalid.
void step_rows(const Options& options, const RowSparseSpan<float>* tensors, std::size_t count);
void step_rows(const Options& options, const RowSparseSpan<double>* tensors, std::size_t count);
void step_rows(const Options& options, const RowSparseSpan<float16, float>* tensors,
               std::size_t count);
void step_rows(const Options& options, const RowSparseSpan<bfloat16, float>* tensors,
               std::size_t count);

// True when every element of the merged gradient (the per-row sums step_rows would apply) is
// finite: the "skip the step if any gradient overflowed" check of the sparse step.
bool row_grads_finite(const RowSparseSpan<float>* tensors, std::size_t count);
bool row_grads_finite(const RowSparseSpan<double>* tensors, std::size_t count);
bool row_grads_finite(const RowSparseSpan<float16, float>* tensors, std::size_t count);
bool row_grads_finite(const RowSparseSpan<bfloat16, float>* tensors, std::size_t count);

}  // namespace rmsprop
