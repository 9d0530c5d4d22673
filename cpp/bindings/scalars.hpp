// Hyper-parameters and counters from Python objects: strict real numbers, switches and ints
// (no truthiness, no bool-as-number) and the interned dict keys a step looks up. Shared by the
// binding files. Must not contain math.
#pragma once

#include <pybind11/pybind11.h>

#include <limits>
#include <string>
#include <utility>

#include "arrays.hpp"
#include "bindings.hpp"
#include "rmsprop/rmsprop.hpp"

namespace rmsprop {
namespace bindings {

namespace py = pybind11;

// Hyper-parameters are read without running Python code (no __float__/__index__ of arbitrary
// objects): such code could edit the lists and dicts a step is reading.
double as_double(py::handle obj, const char* name);
// True/False, numpy.bool_, or the ints 0 and 1.
bool as_bool(py::handle obj, const char* name);
// obj as a Python int if it is a Python or NumPy integer (not a bool), else a null object.
py::object python_int(py::handle obj);

// A step count in [0, kMaxStep] (of a state or of the functional API). The bound keeps
// step + 1 and alpha^step well defined. `name` is a callable, called only to word an error:
// this runs for every tensor of every step.
constexpr long long kMaxStep = 1LL << 62;
template <class Name>
long long as_step(py::handle obj, const Name& name) {
  const py::object integer = python_int(obj);
  if (!integer) throw py::type_error(name() + " must be an int, got " + describe_type(obj));
  int overflow = 0;
  const long long step = PyLong_AsLongLongAndOverflow(integer.ptr(), &overflow);
  if (overflow != 0 || step < 0 || step > kMaxStep) {
    throw py::value_error(name() + " must be in [0, 2**62], got " + std::string(py::repr(obj)));
  }
  return step;
}

// A new reference to the interned str `name`, kept for the module's life.
PyObject* interned(const char* name);

struct Keys {
  PyObject* options[kOptionCount];
  PyObject* params = interned("params");
  PyObject* step = interned("step");
  PyObject* square_avg = interned("square_avg");
  PyObject* grad_avg = interned("grad_avg");
  PyObject* momentum_buffer = interned("momentum_buffer");
  PyObject* master_param = interned("master_param");
  PyObject* master_weights = interned("master_weights");
  PyObject* state_dtype = interned("state_dtype");
  PyObject* square_avg_scale = interned("square_avg_scale");
  Keys() {
    for (std::size_t i = 0; i < kOptionCount; ++i) options[i] = interned(kOptionNames[i]);
  }
};

const Keys& keys();

// Hyper-parameters come as a param-group dict (the optimizer) or as a tuple in the order of
// kOptionNames (the functional API).
Options options_from(py::handle source);

// A state entry the optimizer keeps in a dict (a strong reference), or null when absent.
py::object dict_item(py::handle dict, PyObject* key);

// Float params (float32 and the 16-bit types) are updated with coefficients rounded once to
// float. A hyper-parameter beyond float's range would become inf (or grad_scale 0) and turn
// every element into inf or NaN, so it is refused like any other invalid value.
// param_name is a callable: the name is only built for the error message.
template <class ParamName>
void check_float_range(const Options& o, const ParamName& param_name) {
  constexpr double kLargest = std::numeric_limits<float>::max();
  const std::pair<const char*, double> values[] = {
      {"lr", o.lr},
      {"eps", o.eps},
      {"weight_decay", o.weight_decay},
      {"lr * weight_decay", o.lr * o.weight_decay},
      {"momentum", o.momentum},
      {"grad_scale", o.grad_scale},
  };
  for (const auto& [name, value] : values) {
    if (value > kLargest) {
      throw py::value_error(std::string(name) + " = " + std::string(py::repr(py::float_(value))) +
                            " is beyond float32's range, in which " + param_name() +
                            " is updated");
    }
  }
  if (o.grad_scale < std::numeric_limits<float>::denorm_min()) {
    throw py::value_error("grad_scale = " + std::string(py::repr(py::float_(o.grad_scale))) +
                          " rounds to 0 in float32, in which " + param_name() + " is updated");
  }
}

}  // namespace bindings
}  // namespace rmsprop
