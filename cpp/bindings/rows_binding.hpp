// Row-sparse gradients (rmsprop.RowGrad) in the step bindings: recognising one, checking it
// against its param before anything is written, and the row-sparse tensors of one param group.
// Must not contain math.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "arrays.hpp"
#include "rmsprop/rmsprop.hpp"
#include "rmsprop/rows.hpp"

namespace rmsprop {
namespace bindings {

// A RowGrad's arrays once checked: int64 indices all in [0, rows) and values of shape
// (count, *param.shape[1:]) in the param's dtype, both C-contiguous.
struct RowGradArrays {
  py::array indices;
  py::array values;
  std::size_t rows = 0;
  std::size_t row_size = 0;
  std::size_t count = 0;
};

// True for an instance of rmsprop.RowGrad (never for an ndarray, checked first).
bool is_row_grad(py::handle obj);

// Every refusal of SPEC §10 for the RowGrad given for param `index`: TypeError or ValueError
// naming "grads[i].indices" / "grads[i].values" and the fix.
RowGradArrays checked_row_grad(py::handle obj, long long index, const Namer& namer,
                               const py::array& param);

// The row-sparse tensors of one param group, one list per dtype.
struct RowGroup {
  std::vector<RowSparseSpan<float>> f32;
  std::vector<RowSparseSpan<double>> f64;
  std::vector<RowSparseSpan<float16, float>> f16;
  std::vector<RowSparseSpan<bfloat16, float>> bf16;

  void add(const py::array& param, const RowGradArrays& grad, const py::array& square_avg,
           const std::optional<py::array>& grad_avg,
           const std::optional<py::array>& momentum_buffer,
           const std::optional<py::array>& master_param, long long step,
           std::uint64_t rounding_stream, StateDtype state);
  std::size_t elements() const;  // gradient elements: the work a step does
  bool grads_finite() const;     // call without the GIL
  void run(const Options& options) const;  // call without the GIL
};

}  // namespace bindings
}  // namespace rmsprop
