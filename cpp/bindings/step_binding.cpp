// Python entry point of the step: turns lists of NumPy arrays into TensorSpans without copying,
// refuses anything that cannot be updated in place, checks that no buffers overlap, and only
// then releases the GIL and runs every group. Must not contain math.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "rmsprop/rmsprop.hpp"

namespace py = pybind11;

namespace rmsprop {
namespace bindings {
namespace {

enum class Role { kParam, kGrad, kSquareAvg, kGradAvg, kMomentumBuffer };

const char* state_key(Role role) {
  switch (role) {
    case Role::kSquareAvg:
      return "square_avg";
    case Role::kGradAvg:
      return "grad_avg";
    case Role::kMomentumBuffer:
      return "momentum_buffer";
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

struct Interval {
  std::uintptr_t begin;
  std::uintptr_t end;
  bool written;
  std::string name;
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

// 4 or 8 for a float32 or float64 array (either byte order), 0 for anything else.
std::size_t float_itemsize(const py::array& a) {
  const py::dtype dt = a.dtype();
  if (dt.kind() != 'f') return 0;
  const auto size = static_cast<std::size_t>(dt.itemsize());
  return (size == 4 || size == 8) ? size : 0;
}

// The refusals of SPEC §4 for one array. `param` is null when checking the param itself.
py::array checked_array(py::handle obj, Role role, const std::string& name, const py::array* param,
                        const std::string& param_name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(name + " must be a numpy.ndarray, got " + describe_type(obj));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  const auto& api = py::detail::npy_api::get();
  const int flags = py::detail::array_proxy(a.ptr())->flags;
  const std::size_t itemsize = float_itemsize(a);
  if (itemsize == 0) {
    throw py::type_error(name + " has dtype " + dtype_name(a) +
                         "; rmsprop supports float32 and float64 arrays");
  }
  if (a.dtype().byteorder() == '>') {
    throw py::value_error(name + " is not in native byte order; convert it with "
                                 "arr.astype(arr.dtype.newbyteorder('='))");
  }
  if (param != nullptr && itemsize != float_itemsize(*param)) {
    throw py::type_error(name + " has dtype " + dtype_name(a) + " but " + param_name +
                         " has dtype " + dtype_name(*param) + "; they must match");
  }
  if (param != nullptr && !same_shape(a, *param)) {
    throw py::value_error(name + " has shape " + shape_of(a) + " but " + param_name +
                          " has shape " + shape_of(*param) + "; they must match");
  }
  const bool written = role != Role::kGrad;
  if (!(flags & api.NPY_ARRAY_C_CONTIGUOUS_)) {
    throw py::value_error(name + " is not C-contiguous; rmsprop updates arrays in place and "
                                 "never copies. Pass a contiguous array (np.ascontiguousarray) "
                                 "and keep that array as the parameter");
  }
  if (!(flags & api.NPY_ARRAY_ALIGNED_)) {
    throw py::value_error(name + " is not aligned to its element size; allocate it with NumPy "
                                 "(np.empty/np.zeros) or copy it once before training");
  }
  if (written && !(flags & api.NPY_ARRAY_WRITEABLE_)) {
    throw py::value_error(name + " is read-only; rmsprop updates it in place, so it must be "
                                 "writeable (arr.flags.writeable = True, or pass a copy you keep)");
  }
  return a;
}

double as_double(py::handle obj, const char* name) {
  const double x = PyFloat_AsDouble(obj.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error(std::string(name) + " must be a real number, got " + describe_type(obj));
  }
  return x;
}

bool as_bool(py::handle obj, const char* name) {
  const int truth = PyObject_IsTrue(obj.ptr());
  if (truth < 0) {
    PyErr_Clear();
    throw py::type_error(std::string(name) + " must be a bool, got " + describe_type(obj));
  }
  return truth != 0;
}

// Hyper-parameters arrive as one tuple in the order of kOptionNames (see bindings.hpp).
Options options_from(py::handle item) {
  auto t = py::reinterpret_borrow<py::tuple>(item);
  if (t.size() != kOptionCount) throw py::value_error("internal: wrong option tuple length");
  Options o;
  o.lr = as_double(t[0], "lr");
  o.alpha = as_double(t[1], "alpha");
  o.eps = as_double(t[2], "eps");
  o.weight_decay = as_double(t[3], "weight_decay");
  o.momentum = as_double(t[4], "momentum");
  o.centered = as_bool(t[5], "centered");
  o.maximize = as_bool(t[6], "maximize");
  o.eps_in_sqrt = as_bool(t[7], "eps_in_sqrt");
  o.lr_in_momentum = as_bool(t[8], "lr_in_momentum");
  o.nesterov = as_bool(t[9], "nesterov");
  o.decoupled_weight_decay = as_bool(t[10], "decoupled_weight_decay");
  o.bias_correction = as_bool(t[11], "bias_correction");
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
};

// A plain list or tuple, or None when the group has no such state.
py::sequence optional_sequence(py::handle obj) {
  if (obj.is_none()) return py::sequence();
  return py::reinterpret_borrow<py::sequence>(obj);
}

struct GroupParser {
  Namer namer;
  std::vector<py::object> keep_alive;  // owns every array until the kernels are done
  std::vector<Interval> intervals;

  void add_interval(const py::array& a, bool written, std::string name) {
    const auto nbytes = static_cast<std::uintptr_t>(a.nbytes());
    if (nbytes == 0) return;
    const auto begin = reinterpret_cast<std::uintptr_t>(py::detail::array_proxy(a.ptr())->data);
    intervals.push_back({begin, begin + nbytes, written, std::move(name)});
  }

  Group parse(py::handle group_tuple) {
    auto g = py::reinterpret_borrow<py::tuple>(group_tuple);
    if (g.size() != 8) throw py::value_error("internal: a group is an 8-tuple");
    Group out;
    out.options = options_from(g[0]);
    validate(out.options);
    auto params = py::reinterpret_borrow<py::sequence>(g[1]);
    auto grads = py::reinterpret_borrow<py::sequence>(g[2]);
    auto square_avgs = py::reinterpret_borrow<py::sequence>(g[3]);
    py::sequence grad_avgs = optional_sequence(g[4]);
    py::sequence momentum_buffers = optional_sequence(g[5]);
    auto steps = py::reinterpret_borrow<py::sequence>(g[6]);
    py::sequence indices = optional_sequence(g[7]);
    const std::size_t n = params.size();
    if (grads.size() != n || square_avgs.size() != n || steps.size() != n ||
        (indices && indices.size() != n)) {
      throw py::value_error("internal: group lists differ in length");
    }
    const bool need_grad_avg = out.options.centered;
    const bool need_momentum = out.options.momentum > 0.0;
    if (need_grad_avg && (!grad_avgs || grad_avgs.size() != n)) {
      throw py::value_error(std::string(namer.functional ? "grad_avg" : "grad_avg buffers") +
                            " must be given when centered=True");
    }
    if (need_momentum && (!momentum_buffers || momentum_buffers.size() != n)) {
      throw py::value_error(std::string(namer.functional ? "momentum_buffer" :
                                                           "momentum_buffer buffers") +
                            " must be given when momentum > 0");
    }
    for (std::size_t k = 0; k < n; ++k) {
      const long long index = indices ? indices[k].cast<long long>() : static_cast<long long>(k);
      const std::string param_name = namer(Role::kParam, index);
      py::array param = checked_array(params[k], Role::kParam, param_name, nullptr, "");
      const auto checked = [&](py::handle obj, Role role) {
        const std::string name = namer(role, index);
        py::array a = checked_array(obj, role, name, &param, param_name);
        add_interval(a, role != Role::kGrad, name);
        keep_alive.push_back(a);
        return a;
      };
      add_interval(param, true, param_name);
      keep_alive.push_back(param);
      py::array grad = checked(grads[k], Role::kGrad);
      py::array square_avg = checked(square_avgs[k], Role::kSquareAvg);
      py::array grad_avg;
      py::array momentum_buffer;
      if (need_grad_avg) grad_avg = checked(grad_avgs[k], Role::kGradAvg);
      if (need_momentum) momentum_buffer = checked(momentum_buffers[k], Role::kMomentumBuffer);
      const py::handle step_obj = steps[k];
      const long long step = PyLong_AsLongLong(step_obj.ptr());
      if (step == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::type_error((namer.functional ? std::string("step") : "state step of " +
                                                                           param_name) +
                             " must be an int, got " + describe_type(step_obj));
      }
      if (step < 1) {
        throw py::value_error((namer.functional ? std::string("step") : "step of " + param_name) +
                              " must be >= 1 (the step being taken), got " + std::to_string(step));
      }
      const auto fill = [&](auto& spans, auto type_tag) {
        using T = decltype(type_tag);
        TensorSpan<T> span;
        span.param = data_of<T>(param);
        span.grad = data_of<T>(grad);
        span.square_avg = data_of<T>(square_avg);
        span.grad_avg = need_grad_avg ? data_of<T>(grad_avg) : nullptr;
        span.momentum_buffer = need_momentum ? data_of<T>(momentum_buffer) : nullptr;
        span.size = static_cast<std::size_t>(param.size());
        span.step = step;
        spans.push_back(span);
      };
      if (float_itemsize(param) == sizeof(float)) {
        fill(out.f32, float{});
      } else {
        fill(out.f64, double{});
      }
    }
    return out;
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
      if (cur.written && furthest_any && cur.begin < furthest_any->end) clash = furthest_any;
      if (!clash && furthest_written && cur.begin < furthest_written->end) {
        clash = furthest_written;
      }
      if (clash) {
        throw py::value_error(clash->name + " and " + cur.name +
                              " share memory; every parameter, gradient and state buffer must "
                              "be a separate array (pass a copy of the gradient)");
      }
      if (!furthest_any || cur.end > furthest_any->end) furthest_any = &cur;
      if (cur.written && (!furthest_written || cur.end > furthest_written->end)) {
        furthest_written = &cur;
      }
    }
  }
};

void step_groups(py::sequence groups, bool functional) {
  GroupParser parser{Namer{functional}, {}, {}};
  std::vector<Group> parsed;
  parsed.reserve(groups.size());
  for (py::handle g : groups) parsed.push_back(parser.parse(g));
  parser.check_overlaps();
  // Safe without the GIL: every array is kept alive by parser.keep_alive, the kernels touch
  // only raw buffers, and nothing below calls into Python.
  py::gil_scoped_release release;
  for (const Group& g : parsed) {
    if (!g.f32.empty()) step(g.options, g.f32.data(), g.f32.size());
    if (!g.f64.empty()) step(g.options, g.f64.data(), g.f64.size());
  }
}

void validate_options(py::tuple options) { validate(options_from(options)); }

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
  m.def("step_groups", &step_groups, py::arg("groups"), py::arg("functional") = false,
        "Validate every group, then run one fused step per group with the GIL released.\n\n"
        "Each group is (options, params, grads, square_avgs, grad_avgs|None,\n"
        "momentum_buffers|None, steps, indices|None); options is a tuple in the order of\n"
        "OPTION_NAMES. Nothing is written unless every group is valid.");
  m.def("validate_options", &validate_options, py::arg("options"),
        "Raise ValueError/TypeError if the option tuple (OPTION_NAMES order) is invalid.");
  m.def("roofline_pass", &roofline, py::arg("p").noconvert(), py::arg("g").noconvert(),
        py::arg("v").noconvert(),
        "Bandwidth twin of the plain step (read p, g, v; write p, v) for benchmarks.");
  py::tuple names(kOptionCount);
  for (std::size_t i = 0; i < kOptionCount; ++i) names[i] = py::str(kOptionNames[i]);
  m.attr("OPTION_NAMES") = names;
}

}  // namespace bindings
}  // namespace rmsprop
