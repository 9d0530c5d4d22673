// Python entry point of the step: turns lists of NumPy arrays into TensorSpans without copying,
// refuses anything that cannot be updated in place, checks that no buffers overlap, and only
// then releases the GIL and runs every group. Must not contain math.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings.hpp"
#include "rmsprop/rmsprop.hpp"

namespace py = pybind11;

namespace rmsprop {
namespace bindings {
namespace {

enum class Role { kParam, kGrad, kSquareAvg, kGradAvg, kMomentumBuffer, kMasterParam };

const char* state_key(Role role) {
  switch (role) {
    case Role::kSquareAvg:
      return "square_avg";
    case Role::kGradAvg:
      return "grad_avg";
    case Role::kMomentumBuffer:
      return "momentum_buffer";
    case Role::kMasterParam:
      return "master_param";
    default:
      return "";
  }
}

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

struct Interval {
  std::uintptr_t begin;
  std::uintptr_t end;
  Origin origin;
  bool written() const { return origin.role != Role::kGrad; }
};

std::string describe_type(py::handle obj) { return Py_TYPE(obj.ptr())->tp_name; }

std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.shape(d) != b.shape(d)) return false;
  }
  return true;
}

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    s += std::to_string(a.shape(d));
    if (a.ndim() == 1 || d + 1 < a.ndim()) s += ",";
    if (d + 1 < a.ndim()) s += " ";
  }
  return s + ")";
}

enum class Storage { kUnsupported, kFloat32, kFloat64, kFloat16, kBfloat16 };

// ml_dtypes.bfloat16's scalar type, if ml_dtypes is imported. A bfloat16 array cannot exist
// without it, so we never import it ourselves (run time needs NumPy only).
PyObject* bfloat16_type() {
  static PyObject* type = nullptr;  // a strong reference kept for the process's life
  if (type == nullptr) {
    PyObject* module = PyDict_GetItemString(PyImport_GetModuleDict(), "ml_dtypes");
    if (module != nullptr) {
      type = PyObject_GetAttrString(module, "bfloat16");
      if (type == nullptr) PyErr_Clear();
    }
  }
  return type;
}

// The dtype's descriptor, read directly: a step checks several arrays per param, and creating
// a py::dtype for each costs more than the check. kind, byteorder and type_num sit at the same
// place in NumPy 1 and 2.
const py::detail::PyArrayDescr_Proxy* descr_of(const py::array& a) {
  return reinterpret_cast<const py::detail::PyArrayDescr_Proxy*>(
      py::detail::array_proxy(a.ptr())->descr);
}

Storage storage_of(const py::array& a) {
  // NumPy's stable type numbers: NPY_FLOAT, NPY_DOUBLE, NPY_HALF.
  constexpr int kNpyFloat = 11;
  constexpr int kNpyDouble = 12;
  constexpr int kNpyHalf = 23;
  const auto* descr = descr_of(a);
  switch (descr->type_num) {
    case kNpyFloat:
      return Storage::kFloat32;
    case kNpyDouble:
      return Storage::kFloat64;
    case kNpyHalf:
      return Storage::kFloat16;
    default:
      break;
  }
  if (descr->typeobj != nullptr && descr->typeobj == bfloat16_type()) return Storage::kBfloat16;
  return Storage::kUnsupported;
}

bool sixteen_bit(Storage s) { return s == Storage::kFloat16 || s == Storage::kBfloat16; }

// The refusals of SPEC §4 for one array. `param` is null when checking the param itself.
py::array checked_array(py::handle obj, const Origin& origin, const Namer& namer,
                        const py::array* param) {
  const auto name_of = [&] { return namer(origin.role, origin.index); };
  const auto param_name_of = [&] { return namer(Role::kParam, origin.index); };
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(name_of() + " must be a numpy.ndarray, got " + describe_type(obj));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  const auto& api = py::detail::npy_api::get();
  const int flags = py::detail::array_proxy(a.ptr())->flags;
  const Storage storage = storage_of(a);
  if (storage == Storage::kUnsupported) {
    throw py::type_error(name_of() + " has dtype " + dtype_name(a) +
                         "; rmsprop supports float32, float64, float16 and "
                         "ml_dtypes.bfloat16 arrays");
  }
  if (descr_of(a)->byteorder == '>') {
    throw py::value_error(name_of() + " is not in native byte order; convert it with "
                                      "arr.astype(arr.dtype.newbyteorder('='))");
  }
  if (param != nullptr) {
    const Storage param_storage = storage_of(*param);
    // State of a 16-bit param is float32; everything else matches the param.
    const bool is_state = origin.role != Role::kGrad;
    const Storage expected =
        is_state && sixteen_bit(param_storage) ? Storage::kFloat32 : param_storage;
    if (storage != expected) {
      if (expected == param_storage) {
        throw py::type_error(name_of() + " has dtype " + dtype_name(a) + " but " +
                             param_name_of() + " has dtype " + dtype_name(*param) +
                             "; they must match");
      }
      throw py::type_error(name_of() + " has dtype " + dtype_name(a) + "; the state of a " +
                           dtype_name(*param) + " param is float32");
    }
  }
  if (param != nullptr && !same_shape(a, *param)) {
    throw py::value_error(name_of() + " has shape " + shape_of(a) + " but " + param_name_of() +
                          " has shape " + shape_of(*param) + "; they must match");
  }
  const bool written = origin.role != Role::kGrad;
  if (!(flags & api.NPY_ARRAY_C_CONTIGUOUS_)) {
    throw py::value_error(name_of() + " is not C-contiguous; rmsprop updates arrays in place and "
                                 "never copies. Pass a contiguous array (np.ascontiguousarray) "
                                 "and keep that array as the parameter");
  }
  if (!(flags & api.NPY_ARRAY_ALIGNED_)) {
    throw py::value_error(name_of() + " is not aligned to its element size; allocate it with NumPy "
                                 "(np.empty/np.zeros) or copy it once before training");
  }
  if (written && !(flags & api.NPY_ARRAY_WRITEABLE_)) {
    throw py::value_error(name_of() + " is read-only; rmsprop updates it in place, so it must be "
                                 "writeable (arr.flags.writeable = True, or pass a copy you keep)");
  }
  return a;
}

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

// Dict keys interned once: looking up a str object that is already hashed and interned is the
// fastest dict access there is, and a step does ~20 of them per group.
PyObject* interned(const char* name) {
  PyObject* key = PyUnicode_InternFromString(name);
  if (key == nullptr) throw py::error_already_set();
  return key;  // immortal for the life of the module: never released
}

struct Keys {
  PyObject* options[kOptionCount];
  PyObject* params = interned("params");
  PyObject* step = interned("step");
  PyObject* square_avg = interned("square_avg");
  PyObject* grad_avg = interned("grad_avg");
  PyObject* momentum_buffer = interned("momentum_buffer");
  PyObject* master_param = interned("master_param");
  PyObject* master_weights = interned("master_weights");
  Keys() {
    for (std::size_t i = 0; i < kOptionCount; ++i) options[i] = interned(kOptionNames[i]);
  }
};

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

template <class T>
T* data_of(const py::array& a) {
  return reinterpret_cast<T*>(py::detail::array_proxy(a.ptr())->data);
}

struct Group {
  Options options;
  std::vector<TensorSpan<float>> f32;
  std::vector<TensorSpan<double>> f64;
  std::vector<TensorSpan<float16, float>> f16;
  std::vector<TensorSpan<bfloat16, float>> bf16;

  template <class Fn>
  void for_each_list(Fn&& fn) const {
    fn(f32);
    fn(f64);
    fn(f16);
    fn(bf16);
  }
};

// A state entry the optimizer keeps in a dict, or null when the key is absent.
py::handle dict_item(py::handle dict, PyObject* key) {
  PyObject* value = PyDict_GetItemWithError(dict.ptr(), key);  // borrowed
  if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return value;
}

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

// Thrown when an optimizer state lacks a buffer its options need, so that step_optimizer can
// report it to Python (which creates the buffers) instead of failing.
struct MissingState {};

struct Parser {
  Namer namer;
  bool missing_state_is_error = true;
  std::vector<py::object> keep_alive;  // owns every array until the kernels are done
  std::vector<Interval> intervals;

  void add_interval(const py::array& a, const Origin& origin) {
    const auto nbytes = static_cast<std::uintptr_t>(a.nbytes());
    if (nbytes == 0) return;
    const auto begin = reinterpret_cast<std::uintptr_t>(py::detail::array_proxy(a.ptr())->data);
    intervals.push_back({begin, begin + nbytes, origin});
  }

  // Checks one param with its gradient and state and appends it to `out`. `grad_avg` and
  // `momentum_buffer` are looked at only when the options need them; null means absent.
  // master_param_obj is used when want_master is true and the param is 16-bit.
  void add_tensor(Group& out, long long index, py::handle param_obj, py::handle grad_obj,
                  py::handle square_avg_obj, py::handle grad_avg_obj,
                  py::handle momentum_buffer_obj, py::handle master_param_obj, bool want_master,
                  long long step) {
    const Origin param_origin{Role::kParam, index};
    py::array param = checked_array(param_obj, param_origin, namer, nullptr);
    add_interval(param, param_origin);
    keep_alive.push_back(param);
    const auto checked = [&](py::handle obj, Role role) {
      const Origin origin{role, index};
      if (!obj || obj.is_none()) {
        if (!missing_state_is_error) throw MissingState{};
        throw py::value_error(namer(role, index) + " is missing; " +
                              (namer.functional ? "pass it" : "it was removed from the state") +
                              " (centered=True needs grad_avg, momentum > 0 needs "
                              "momentum_buffer)");
      }
      py::array a = checked_array(obj, origin, namer, &param);
      add_interval(a, origin);
      keep_alive.push_back(a);
      return a;
    };
    const Storage storage = storage_of(param);
    if (storage != Storage::kFloat64) {
      check_float_range(out.options, [&] { return namer(Role::kParam, index); });
    }
    const bool need_grad_avg = out.options.centered;
    const bool need_momentum = out.options.momentum > 0.0;
    const bool need_master = want_master && sixteen_bit(storage);
    if (namer.functional && want_master && !need_master) {
      // The optimizer silently skips master copies of float32/float64 params (they are their
      // own master copy); a caller who passes one explicitly has mixed up the arrays.
      throw py::value_error("master_param is only for float16/bfloat16 params; param is " +
                            std::string(py::str(param.dtype())));
    }
    const py::array grad = checked(grad_obj, Role::kGrad);
    const py::array square_avg = checked(square_avg_obj, Role::kSquareAvg);
    // std::optional, not an empty py::array: that would allocate a NumPy array every step.
    std::optional<py::array> grad_avg;
    std::optional<py::array> momentum_buffer;
    std::optional<py::array> master_param;
    if (need_grad_avg) grad_avg = checked(grad_avg_obj, Role::kGradAvg);
    if (need_momentum) momentum_buffer = checked(momentum_buffer_obj, Role::kMomentumBuffer);
    if (need_master) master_param = checked(master_param_obj, Role::kMasterParam);
    if (step < 1) {
      throw py::value_error((namer.functional ? std::string("step") :
                                                "step of " + namer(Role::kParam, index)) +
                            " must be >= 1 (the step being taken), got " + std::to_string(step));
    }
    const auto fill = [&](auto& spans) {
      using Span = typename std::decay_t<decltype(spans)>::value_type;
      using P = std::remove_pointer_t<decltype(Span::param)>;
      using S = std::remove_pointer_t<decltype(Span::square_avg)>;
      Span span;
      span.param = data_of<P>(param);
      span.grad = data_of<P>(grad);
      span.square_avg = data_of<S>(square_avg);
      span.grad_avg = grad_avg ? data_of<S>(*grad_avg) : nullptr;
      span.momentum_buffer = momentum_buffer ? data_of<S>(*momentum_buffer) : nullptr;
      span.master_param = master_param ? data_of<S>(*master_param) : nullptr;
      span.size = static_cast<std::size_t>(param.size());
      span.step = step;
      span.rounding_stream = static_cast<std::uint64_t>(index);
      spans.push_back(span);
    };
    switch (storage) {
      case Storage::kFloat32:
        return fill(out.f32);
      case Storage::kFloat64:
        return fill(out.f64);
      case Storage::kFloat16:
        return fill(out.f16);
      default:
        return fill(out.bf16);
    }
  }

  // Writing through one buffer while reading or writing another that shares its bytes would
  // break the kernel's no-aliasing assumption and silently corrupt results.
  void check_overlaps() {
    std::sort(intervals.begin(), intervals.end(),
              [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
    const Interval* furthest_any = nullptr;
    const Interval* furthest_written = nullptr;
    for (const Interval& cur : intervals) {
      const Interval* clash = nullptr;
      if (cur.written() && furthest_any && cur.begin < furthest_any->end) clash = furthest_any;
      if (!clash && furthest_written && cur.begin < furthest_written->end) {
        clash = furthest_written;
      }
      if (clash) {
        throw py::value_error(namer(clash->origin.role, clash->origin.index) + " and " +
                              namer(cur.origin.role, cur.origin.index) +
                              " share memory; every parameter, gradient and state buffer must "
                              "be a separate array (pass a copy of the gradient)");
      }
      if (!furthest_any || cur.end > furthest_any->end) furthest_any = &cur;
      if (cur.written() && (!furthest_written || cur.end > furthest_written->end)) {
        furthest_written = &cur;
      }
    }
  }
};

// Safe without the GIL: the parser's keep_alive owns every array, the kernels touch only raw
// buffers, and nothing in between calls into Python.
// Below this many elements a step keeps the GIL: it takes a few microseconds, less than
// releasing and re-taking the GIL would add. NumPy's ufuncs follow the same policy.
constexpr std::size_t kReleaseGilElements = 1 << 14;

std::size_t element_count(const std::vector<Group>& groups) {
  std::size_t total = 0;
  for (const Group& g : groups) {
    g.for_each_list([&](const auto& spans) {
      for (const auto& span : spans) total += span.size;
    });
  }
  return total;
}

void run_groups(const std::vector<Group>& groups) {
  std::optional<py::gil_scoped_release> release;
  if (element_count(groups) >= kReleaseGilElements) release.emplace();
  for (const Group& g : groups) {
    g.for_each_list([&](const auto& spans) {
      if (!spans.empty()) step(g.options, spans.data(), spans.size());
    });
  }
}

// The AMP check: false if any gradient of any group holds an inf or NaN.
bool all_grads_finite(const std::vector<Group>& groups) {
  std::optional<py::gil_scoped_release> release;
  if (element_count(groups) >= kReleaseGilElements) release.emplace();
  bool finite = true;
  for (const Group& g : groups) {
    g.for_each_list([&](const auto& spans) {
      if (finite && !spans.empty()) finite = grads_finite(spans.data(), spans.size());
    });
  }
  return finite;
}

enum class StepResult : int { kApplied = 0, kStateMissing = 1, kSkippedNonfinite = 2 };

// The optimizer's step: groups are the param-group dicts; grads and states (dicts with
// "step", "square_avg", ...) are aligned with all params in group order. Params whose grad is
// None are skipped. Each state's "step" is incremented only after every group ran.
// Returns kStateMissing, having changed nothing, when a stepped param's state lacks a buffer
// and create_state_first is true: the caller then creates the buffers and calls again. With
// skip_if_nonfinite, returns kSkippedNonfinite, having changed nothing, if any gradient holds
// an inf or NaN.
int step_optimizer(py::list groups, py::handle grads_obj, py::list states,
                   bool create_state_first, bool skip_if_nonfinite) {
  Parser parser{Namer{false}, !create_state_first, {}, {}};
  std::vector<Group> parsed;
  parsed.reserve(groups.size());
  std::vector<std::pair<py::handle, long long>> new_steps;
  new_steps.reserve(states.size());
  parser.keep_alive.reserve(4 * states.size());
  parser.intervals.reserve(4 * states.size());
  std::size_t offset = 0;
  if (!PyList_Check(grads_obj.ptr()) && !PyTuple_Check(grads_obj.ptr())) {
    throw py::type_error("grads must be a list with one gradient per param, got " +
                         describe_type(grads_obj) +
                         (py::isinstance<py::array>(grads_obj) ?
                              " (wrap a single gradient: step([grad]))" : ""));
  }
  const auto grads = py::reinterpret_borrow<py::sequence>(grads_obj);
  const std::size_t total = states.size();
  if (grads.size() != total) {
    throw py::value_error("step() got " + std::to_string(grads.size()) + " gradients for " +
                          std::to_string(total) +
                          " params; pass one per param in param-group order (None skips one)");
  }
  const Keys& key = keys();
  for (py::handle group : groups) {
    Group out;
    out.options = options_from(group);
    validate(out.options);
    const py::handle params_obj = dict_item(group, key.params);
    if (!params_obj || !PyList_Check(params_obj.ptr())) {
      throw py::type_error("every param group needs a 'params' list");
    }
    auto params = py::reinterpret_borrow<py::list>(params_obj);
    const py::handle master_flag = dict_item(group, key.master_weights);
    const bool want_master = master_flag && as_bool(master_flag, "master_weights");
    const std::size_t n = params.size();
    if (offset + n > total) {
      throw py::value_error("the param groups hold more params than there are gradients");
    }
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t index = offset + k;
      const py::handle grad = PySequence_Fast_GET_ITEM(grads.ptr(), index);
      if (grad.is_none()) continue;
      const py::handle state = PyList_GET_ITEM(states.ptr(), index);
      if (!PyDict_Check(state.ptr())) throw py::type_error("internal: a state is not a dict");
      const py::handle step_obj = dict_item(state, key.step);
      const long long step =
          step_obj ? as_step(step_obj, [&] {
            return "state[" + std::to_string(index) + "]['step']";
          }) : 0;
      try {
        parser.add_tensor(out, static_cast<long long>(index), params[k], grad,
                          dict_item(state, key.square_avg), dict_item(state, key.grad_avg),
                          dict_item(state, key.momentum_buffer),
                          dict_item(state, key.master_param), want_master, step + 1);
      } catch (const MissingState&) {
        return static_cast<int>(StepResult::kStateMissing);
      }
      new_steps.emplace_back(state, step + 1);
    }
    offset += n;
    parsed.push_back(std::move(out));
  }
  if (offset != total) throw py::value_error("internal: param groups and grads differ in length");
  parser.check_overlaps();
  if (skip_if_nonfinite && !all_grads_finite(parsed)) {
    return static_cast<int>(StepResult::kSkippedNonfinite);
  }
  run_groups(parsed);
  for (const auto& [state, step] : new_steps) {
    if (PyDict_SetItem(state.ptr(), key.step, py::int_(step).ptr()) != 0) {
      throw py::error_already_set();
    }
  }
  return static_cast<int>(StepResult::kApplied);
}

void step_functional(py::tuple options, py::handle param, py::handle grad, py::handle square_avg,
                     py::handle grad_avg, py::handle momentum_buffer, py::handle master_param,
                     py::handle step_obj) {
  Parser parser{Namer{true}, true, {}, {}};
  std::vector<Group> parsed(1);
  parsed[0].options = options_from(options);
  validate(parsed[0].options);
  const long long step = as_step(step_obj, [] { return std::string("step"); });
  parser.add_tensor(parsed[0], 0, param, grad, square_avg, grad_avg, momentum_buffer,
                    master_param, !master_param.is_none(), step);
  parser.check_overlaps();
  run_groups(parsed);
}

void validate_options(py::handle options) { validate(options_from(options)); }

void roofline(py::array_t<float, py::array::c_style> p, py::array_t<float, py::array::c_style> g,
              py::array_t<float, py::array::c_style> v) {
  if (p.size() != g.size() || p.size() != v.size()) {
    throw py::value_error("p, g and v must have the same size");
  }
  float* pp = p.mutable_data();
  const float* gp = g.data();
  float* vp = v.mutable_data();
  const auto n = static_cast<std::size_t>(p.size());
  py::gil_scoped_release release;
  roofline_pass(pp, gp, vp, n);
}

}  // namespace

void bind_step(py::module_& m) {
  m.def("step_optimizer", &step_optimizer, py::arg("groups"), py::arg("grads"),
        py::arg("states"), py::arg("create_state_first"), py::arg("skip_if_nonfinite"),
        "Validate every group, then run one fused step per group with the GIL released.\n\n"
        "groups are the param-group dicts (hyper-parameters and 'params'); grads and states\n"
        "(dicts) are aligned with all params. Nothing is written unless every\n"
        "input is valid; each stepped state's 'step' is incremented afterwards. Returns 0\n"
        "(applied), 1 (create_state_first and a state lacks a buffer) or 2\n"
        "(skip_if_nonfinite and a gradient is inf/NaN); nothing changes unless 0.");
  m.def("step_functional", &step_functional, py::arg("options"), py::arg("param"),
        py::arg("grad"), py::arg("square_avg"), py::arg("grad_avg"),
        py::arg("momentum_buffer"), py::arg("master_param"), py::arg("step"),
        "One validated fused step on one array (rmsprop.functional.rmsprop_step).");
  m.def("validate_options", &validate_options, py::arg("options"),
        "Raise ValueError/TypeError if a param group's (or an OPTION_NAMES-ordered tuple's)\n"
        "hyper-parameters are invalid.");
  m.def("roofline_pass", &roofline, py::arg("p").noconvert(), py::arg("g").noconvert(),
        py::arg("v").noconvert(),
        "Bandwidth twin of the plain step (read p, g, v; write p, v) for benchmarks.");
  py::tuple names(kOptionCount);
  for (std::size_t i = 0; i < kOptionCount; ++i) names[i] = py::str(kOptionNames[i]);
  m.attr("OPTION_NAMES") = names;
}

}  // namespace bindings
}  // namespace rmsprop
