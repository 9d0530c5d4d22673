// Turning Python objects into arrays the core may update in place: dtype and layout checks and
// the names errors use. Shared by the binding files. Must not contain math.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <type_traits>

namespace rmsprop {
namespace bindings {

namespace py = pybind11;

enum class Role {
  kParam,
  kGrad,
  kSquareAvg,
  kGradAvg,
  kMomentumBuffer,
  kMasterParam,
  kSquareAvgScale
};

const char* state_key(Role role);

// Names an array the way the caller passed it: "params[3]" and "state[3]['square_avg']" from
// the optimizer, "param" and "momentum_buffer" from the functional API.
struct Namer {
  bool functional;
  std::string operator()(Role role, long long index) const {
    if (functional) {
      switch (role) {
        case Role::kParam:
          return "param";
        case Role::kGrad:
          return "grad";
        default:
          return state_key(role);
      }
    }
    const std::string i = "[" + std::to_string(index) + "]";
    switch (role) {
      case Role::kParam:
        return "params" + i;
      case Role::kGrad:
        return "grads" + i;
      default:
        return "state" + i + "['" + state_key(role) + "']";
    }
  }
};

// Where an array came from; turned into a name only when a message needs one.
struct Origin {
  Role role;
  long long index;
};

std::string describe_type(py::handle obj);
std::string dtype_name(const py::array& a);
bool same_shape(const py::array& a, const py::array& b);
std::string shape_of(const py::array& a);

enum class Storage { kUnsupported, kFloat32, kFloat64, kFloat16, kBfloat16 };

Storage storage_of(const py::array& a);
inline bool sixteen_bit(Storage s) { return s == Storage::kFloat16 || s == Storage::kBfloat16; }

// The refusals of SPEC §4 for one array. `param` is null when checking the param itself; else
// obj must match its shape, and its dtype (or be float32 state of a 16-bit param).
py::array checked_array(py::handle obj, const Origin& origin, const Namer& namer,
                        const py::array* param);

template <class T>
T* data_of(const py::array& a) {
  return reinterpret_cast<T*>(py::detail::array_proxy(a.ptr())->data);
}

template <class T>
T* data_or_null(const std::optional<py::array>& a) {
  return a ? data_of<T>(*a) : nullptr;
}

// Points a dense or a row-sparse span at its param and float state buffers (absent ones
// null); compact state is pointed at afterwards (compact_state.hpp).
template <class Span>
void point_at_state(Span& span, const py::array& param, const py::array& square_avg,
                    const std::optional<py::array>& grad_avg,
                    const std::optional<py::array>& momentum_buffer,
                    const std::optional<py::array>& master_param) {
  using P = std::remove_pointer_t<decltype(span.param)>;
  using S = std::remove_pointer_t<decltype(span.square_avg)>;
  span.param = data_of<P>(param);
  span.square_avg = data_of<S>(square_avg);
  span.grad_avg = data_or_null<S>(grad_avg);
  span.momentum_buffer = data_or_null<S>(momentum_buffer);
  span.master_param = data_or_null<S>(master_param);
}

}  // namespace bindings
}  // namespace rmsprop
