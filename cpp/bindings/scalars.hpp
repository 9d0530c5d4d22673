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

// The core's float32 range refusal (float32_range_problem) worded for Python, naming the param.
// param_name is a callable: the name is only built for the error message.
template <class ParamName>
void check_float_range(const Options& o, const ParamName& param_name) {
  const std::optional<Float32RangeProblem> problem = float32_range_problem(o);
  if (!problem) return;
  const std::string value = py::repr(py::float_(problem->value));
  throw py::value_error(std::string(problem->name) + " = " + value +
                        (problem->rounds_to_zero ? " rounds to 0 in float32"
                                                 : " is beyond float32's range") +
                        ", in which " + param_name() + " is updated");
}

}  // namespace bindings
}  // namespace rmsprop
