// Checks and packing of row-sparse gradients for the step bindings (see rows_binding.hpp).
// Must not contain math.
#include "rows_binding.hpp"

#include "compact_state.hpp"

#include <string>
#include <type_traits>

namespace rmsprop {
namespace bindings {
namespace {

const py::detail::PyArrayDescr_Proxy* descr_of(const py::array& a) {
  return reinterpret_cast<const py::detail::PyArrayDescr_Proxy*>(
      py::detail::array_proxy(a.ptr())->descr);
}

bool flag(const py::array& a, int which) {
  return (py::detail::array_proxy(a.ptr())->flags & which) != 0;
}

// The layout every array the core reads must have: no copies are ever made to get it.
void check_layout(const py::array& a, const std::string& name) {
  const auto& api = py::detail::npy_api::get();
  if (descr_of(a)->byteorder == '>') {
    throw py::value_error(name + " is not in native byte order; convert it with "
                                 "arr.astype(arr.dtype.newbyteorder('='))");
  }
  if (!flag(a, api.NPY_ARRAY_C_CONTIGUOUS_)) {
    throw py::value_error(name + " is not C-contiguous; pass np.ascontiguousarray(...) of it");
  }
  if (!flag(a, api.NPY_ARRAY_ALIGNED_)) {
    throw py::value_error(name + " is not aligned to its element size; pass a copy of it");
  }
}

std::string row_shape_of(const py::array& param, const std::string& count) {
  std::string s = "(" + count;
  if (param.ndim() == 1) return s + ",)";
  for (py::ssize_t d = 1; d < param.ndim(); ++d) s += ", " + std::to_string(param.shape(d));
  return s + ")";
}

}  // namespace

bool is_row_grad(py::handle obj) {
  if (py::isinstance<py::array>(obj) || obj.is_none()) return false;
  // The class lives in Python (rmsprop.rows); rmsprop/__init__ imported it before any step.
  static PyObject* row_grad_type = [] {
    py::object type = py::module_::import("rmsprop.rows").attr("RowGrad");
    return type.release().ptr();
  }();
  // The exact type, read from the object header: isinstance() could run Python code (a
  // __class__ property) while the parser holds the step's inputs, and a subclass could
  // override the indices/values properties the parser reads next.
  return reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr())) == row_grad_type;
}

RowGradArrays checked_row_grad(py::handle obj, long long index, const Namer& namer,
                               const py::array& param) {
  const std::string grad_name = namer(Role::kGrad, index);
  const std::string param_name = namer(Role::kParam, index);
  const std::string indices_name = grad_name + ".indices";
  const std::string values_name = grad_name + ".values";
  RowGradArrays out;
  const py::object indices_obj = obj.attr("indices");
  const py::object values_obj = obj.attr("values");
  if (!py::isinstance<py::array>(indices_obj)) {
    throw py::type_error(indices_name + " must be a numpy.ndarray, got " +
                         describe_type(indices_obj));
  }
  if (!py::isinstance<py::array>(values_obj)) {
    throw py::type_error(values_name + " must be a numpy.ndarray, got " +
                         describe_type(values_obj));
  }
  out.indices = py::reinterpret_borrow<py::array>(indices_obj);
  out.values = py::reinterpret_borrow<py::array>(values_obj);
  const auto* index_descr = descr_of(out.indices);
  if (index_descr->kind != 'i' || out.indices.itemsize() != 8) {
    throw py::type_error(indices_name + " has dtype " + dtype_name(out.indices) +
                         "; row indices are int64 (build the RowGrad with rmsprop.RowGrad)");
  }
  if (out.indices.ndim() != 1) {
    throw py::value_error(indices_name + " has shape " + shape_of(out.indices) +
                          "; row indices are a 1-D array of k entries");
  }
  check_layout(out.indices, indices_name);
  if (param.ndim() < 1) {
    throw py::value_error(param_name + " is 0-d; a RowGrad updates rows of a param of shape "
                          "(rows, ...): pass a dense gradient for it");
  }
  const Storage storage = storage_of(out.values);
  if (storage == Storage::kUnsupported || storage != storage_of(param)) {
    throw py::type_error(values_name + " has dtype " + dtype_name(out.values) + " but " +
                         param_name + " has dtype " + dtype_name(param) + "; they must match");
  }
  out.count = static_cast<std::size_t>(out.indices.shape(0));
  bool shape_ok = out.values.ndim() == param.ndim() &&
                  static_cast<std::size_t>(out.values.shape(0)) == out.count;
  for (py::ssize_t d = 1; shape_ok && d < param.ndim(); ++d) {
    shape_ok = out.values.shape(d) == param.shape(d);
  }
  if (!shape_ok) {
    throw py::value_error(values_name + " has shape " + shape_of(out.values) + " but must be " +
                          row_shape_of(param, std::to_string(out.count)) +
                          ": one row of " + param_name + " (shape " + shape_of(param) +
                          ") per index");
  }
  check_layout(out.values, values_name);
  out.rows = static_cast<std::size_t>(param.shape(0));
  out.row_size = 1;
  for (py::ssize_t d = 1; d < param.ndim(); ++d) {
    out.row_size *= static_cast<std::size_t>(param.shape(d));
  }
  const auto* rows = data_of<const std::int64_t>(out.indices);
  for (std::size_t i = 0; i < out.count; ++i) {
    if (rows[i] < 0 || static_cast<std::uint64_t>(rows[i]) >= out.rows) {
      throw py::value_error(indices_name + "[" + std::to_string(i) + "] = " +
                            std::to_string(rows[i]) + " is out of range: " + param_name +
                            " has " + std::to_string(out.rows) + " rows, so row indices must "
                            "be in [0, " + std::to_string(out.rows) + ")");
    }
  }
  return out;
}

void RowGroup::add(const py::array& param, const RowGradArrays& grad,
                   const py::array& square_avg, const std::optional<py::array>& grad_avg,
                   const std::optional<py::array>& momentum_buffer,
                   const std::optional<py::array>& master_param, long long step,
                   std::uint64_t rounding_stream, StateDtype state) {
  const auto fill = [&](auto& spans) {
    using Span = typename std::decay_t<decltype(spans)>::value_type;
    using P = std::remove_pointer_t<decltype(Span::param)>;
    using S = std::remove_pointer_t<decltype(Span::square_avg)>;
    Span span;
    point_at_state(span, param, square_avg, grad_avg, momentum_buffer, master_param);
    span.rows = grad.rows;
    span.row_size = grad.row_size;
    span.indices = data_of<const std::int64_t>(grad.indices);
    span.values = data_of<const P>(grad.values);
    span.count = grad.count;
    span.step = step;
    span.rounding_stream = rounding_stream;
    if constexpr (std::is_same_v<S, float>) {
      if (state != StateDtype::kFloat) {
        point_at_compact_state(span, state, square_avg, std::nullopt, grad_avg, momentum_buffer);
      }
    }
    spans.push_back(span);
  };
  switch (storage_of(param)) {
    case Storage::kFloat32:
      return fill(f32);
    case Storage::kFloat64:
      return fill(f64);
    case Storage::kFloat16:
      return fill(f16);
    default:
      return fill(bf16);
  }
}

std::size_t RowGroup::elements() const {
  std::size_t total = 0;
  const auto add_up = [&](const auto& spans) {
    for (const auto& span : spans) total += span.count * span.row_size;
  };
  add_up(f32);
  add_up(f64);
  add_up(f16);
  add_up(bf16);
  return total;
}

bool RowGroup::grads_finite() const {
  return (f32.empty() || row_grads_finite(f32.data(), f32.size())) &&
         (f64.empty() || row_grads_finite(f64.data(), f64.size())) &&
         (f16.empty() || row_grads_finite(f16.data(), f16.size())) &&
         (bf16.empty() || row_grads_finite(bf16.data(), bf16.size()));
}

void RowGroup::run(const Options& options) const {
  if (!f32.empty()) step_rows(options, f32.data(), f32.size());
  if (!f64.empty()) step_rows(options, f64.data(), f64.size());
  if (!f16.empty()) step_rows(options, f16.data(), f16.size());
  if (!bf16.empty()) step_rows(options, bf16.data(), bf16.size());
}

}  // namespace bindings
}  // namespace rmsprop
