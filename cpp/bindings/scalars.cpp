// Parsing of hyper-parameters and counters (see scalars.hpp). Must not contain math.
#include "scalars.hpp"

#include <string>

namespace rmsprop {
namespace bindings {

namespace {

// NumPy's abstract scalar types, looked up once (rmsprop imports NumPy before this module) and
// kept for the process's life.
struct NumpyTypes {
  PyTypeObject* floating;
  PyTypeObject* integer;
  PyTypeObject* bool_;
};

const NumpyTypes& numpy_types() {
  static const NumpyTypes types = [] {
    const py::module_ numpy = py::module_::import("numpy");
    const auto type = [&](const char* name) {
      return reinterpret_cast<PyTypeObject*>(py::object(numpy.attr(name)).release().ptr());
    };
    return NumpyTypes{type("floating"), type("integer"), type("bool_")};
  }();
  return types;
}

// A scalar type NumPy itself defines under `abstract`. Those are static types whose number
// methods are NumPy's C code; a subclass defined in Python (a heap type) could override
// __float__/__index__ with code that edits the lists and dicts a step is reading.
bool numpy_scalar(PyObject* obj, PyTypeObject* abstract) {
  PyTypeObject* type = Py_TYPE(obj);
  return (type->tp_flags & Py_TPFLAGS_HEAPTYPE) == 0 && PyType_IsSubtype(type, abstract);
}

[[noreturn]] void refuse_real(py::handle obj, const char* name) {
  throw py::type_error(std::string(name) + " must be a real number (a Python or NumPy float or " +
                       "int), got " + describe_type(obj) + "; pass float(x)");
}

}  // namespace

// Reads numbers without running any Python code: a float or int (or a subclass) by its stored
// value, never through an overridable __float__/__index__, and NumPy's own scalar types through
// NumPy's C conversions. Anything else is refused: the caller converts it with float(x).
double as_double(py::handle obj, const char* name) {
  PyObject* ptr = obj.ptr();
  if (PyFloat_Check(ptr)) return PyFloat_AS_DOUBLE(ptr);
  // bool is an int subclass: lr=True would silently mean 1.0.
  if (PyBool_Check(ptr)) {
    throw py::type_error(std::string(name) + " must be a real number, got bool");
  }
  const NumpyTypes& numpy = numpy_types();
  double x = 0.0;
  if (PyLong_Check(ptr)) {
    x = PyLong_AsDouble(ptr);
  } else if (numpy_scalar(ptr, numpy.floating) || numpy_scalar(ptr, numpy.integer)) {
    x = PyFloat_AsDouble(ptr);
  } else {
    refuse_real(obj, name);
  }
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + " is too large for a float, got " +
                          describe_type(obj));
  }
  return x;
}

// True/False, numpy.bool_, or the ints 0 and 1. Not truthiness: centered="False" or
// maximize=0.5 are mistakes that would otherwise switch the option on.
bool as_bool(py::handle obj, const char* name) {
  PyObject* ptr = obj.ptr();
  if (ptr == Py_True) return true;
  if (ptr == Py_False) return false;
  if (Py_TYPE(ptr) == numpy_types().bool_) return PyObject_IsTrue(ptr) == 1;
  if (PyLong_Check(ptr)) {
    // An int subclass is read by value: PyLong_AsLong does not call __index__ on it.
    const long value = PyLong_AsLong(ptr);
    if (value == 0 || value == 1) return value == 1;
    PyErr_Clear();
  }
  throw py::type_error(std::string(name) + " must be True or False, got " +
                       describe_type(obj) + " " + std::string(py::repr(obj)));
}

// obj as a Python int if it is a Python int (or subclass, read by value) or a NumPy integer,
// not a bool; else a null object. No other __index__ is called.
py::object python_int(py::handle obj) {
  PyObject* ptr = obj.ptr();
  if (PyLong_Check(ptr) && !PyBool_Check(ptr)) return py::reinterpret_borrow<py::object>(obj);
  if (!numpy_scalar(ptr, numpy_types().integer)) return {};
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
  const auto item = [&](std::size_t i) -> py::object {
    if (!is_dict) return py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(source.ptr(), i));
    py::object value = dict_item(source, keys().options[i]);
    if (!value) {
      throw py::value_error(std::string("missing hyper-parameter '") + kOptionNames[i] +
                            "'; set it again in param_groups");
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
  const py::object seed = item(14);
  const py::object seed_int = python_int(seed);
  o.rounding_seed = seed_int ? PyLong_AsUnsignedLongLong(seed_int.ptr()) : 0;
  if (!seed_int || PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error("rounding_seed must be an int in [0, 2**64), got " +
                         std::string(py::repr(seed)));
  }
  return o;
}

py::object dict_item(py::handle dict, PyObject* key) {
  // A strong reference at once: the lookup itself can run a key's __eq__, and so can later
  // lookups, which could drop the value from the dict while it is still in use.
  PyObject* value = PyDict_GetItemWithError(dict.ptr(), key);  // borrowed
  if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return py::reinterpret_borrow<py::object>(value);
}

}  // namespace bindings
}  // namespace rmsprop
