// Parsing of hyper-parameters and counters (see scalars.hpp). Must not contain math.
#include "scalars.hpp"

#include <string>

namespace rmsprop {
namespace bindings {

double as_double(py::handle obj, const char* name) {
  // bool is an int subclass: lr=True would silently mean 1.0.
  if (PyBool_Check(obj.ptr())) {
    throw py::type_error(std::string(name) + " must be a real number, got bool");
  }
  const double x = PyFloat_AsDouble(obj.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error(std::string(name) + " must be a real number, got " + describe_type(obj));
  }
  return x;
}

// True/False, numpy.bool_, or the ints 0 and 1. Not truthiness: centered="False" or
// maximize=0.5 are mistakes that would otherwise switch the option on.
bool as_bool(py::handle obj, const char* name) {
  PyObject* ptr = obj.ptr();
  if (ptr == Py_True) return true;
  if (ptr == Py_False) return false;
  const std::string type = describe_type(obj);
  if (type == "numpy.bool" || type == "numpy.bool_") return PyObject_IsTrue(ptr) == 1;
  if (PyLong_Check(ptr)) {
    const long value = PyLong_AsLong(ptr);
    if (value == 0 || value == 1) return value == 1;
    PyErr_Clear();
  }
  throw py::type_error(std::string(name) + " must be a bool (True or False), got " + type + " " +
                       std::string(py::repr(obj)));
}

// obj as a Python int if it is a Python or NumPy integer (not a bool), else a null object.
py::object python_int(py::handle obj) {
  PyObject* ptr = obj.ptr();
  if (PyLong_CheckExact(ptr)) return py::reinterpret_borrow<py::object>(obj);
  if (PyBool_Check(ptr) || !PyIndex_Check(ptr)) return {};
  auto index = py::reinterpret_steal<py::object>(PyNumber_Index(ptr));
  if (!index) PyErr_Clear();
  return index;
}

// Dict keys interned once: looking up a str object that is already hashed and interned is the
// fastest dict access there is, and a step does ~20 of them per group.
PyObject* interned(const char* name) {
  PyObject* key = PyUnicode_InternFromString(name);
  if (key == nullptr) throw py::error_already_set();
  return key;  // immortal for the life of the module: never released
}

const Keys& keys() {
  static const Keys k;  // first use is under the GIL
  return k;
}

// Hyper-parameters come as a param-group dict (the optimizer) or as a tuple in the order of
// kOptionNames (the functional API).
Options options_from(py::handle source) {
  const bool is_dict = PyDict_Check(source.ptr());
  if (!is_dict && !(PyTuple_Check(source.ptr()) &&
                    static_cast<std::size_t>(PyTuple_GET_SIZE(source.ptr())) == kOptionCount)) {
    throw py::type_error("options must be a param-group dict or a tuple in OPTION_NAMES order");
  }
  const auto item = [&](std::size_t i) -> py::handle {
    if (!is_dict) return PyTuple_GET_ITEM(source.ptr(), i);
    PyObject* value = PyDict_GetItemWithError(source.ptr(), keys().options[i]);
    if (value == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      throw py::value_error(std::string("a param group has no '") + kOptionNames[i] +
                            "' hyper-parameter; set it again in param_groups");
    }
    return value;
  };
  Options o;
  o.lr = as_double(item(0), "lr");
  o.alpha = as_double(item(1), "alpha");
  o.eps = as_double(item(2), "eps");
  o.weight_decay = as_double(item(3), "weight_decay");
  o.momentum = as_double(item(4), "momentum");
  o.centered = as_bool(item(5), "centered");
  o.maximize = as_bool(item(6), "maximize");
  o.eps_in_sqrt = as_bool(item(7), "eps_in_sqrt");
  o.lr_in_momentum = as_bool(item(8), "lr_in_momentum");
  o.nesterov = as_bool(item(9), "nesterov");
  o.decoupled_weight_decay = as_bool(item(10), "decoupled_weight_decay");
  o.bias_correction = as_bool(item(11), "bias_correction");
  o.grad_scale = as_double(item(12), "grad_scale");
  o.stochastic_rounding = as_bool(item(13), "stochastic_rounding");
  const py::handle seed = item(14);
  const py::object seed_int = python_int(seed);
  o.rounding_seed = seed_int ? PyLong_AsUnsignedLongLong(seed_int.ptr()) : 0;
  if (!seed_int || PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error("rounding_seed must be an int in [0, 2**64), got " +
                         std::string(py::repr(seed)));
  }
  return o;
}

py::handle dict_item(py::handle dict, PyObject* key) {
  PyObject* value = PyDict_GetItemWithError(dict.ptr(), key);  // borrowed
  if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return value;
}

}  // namespace bindings
}  // namespace rmsprop
