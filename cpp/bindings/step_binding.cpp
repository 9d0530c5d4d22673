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
#include "arrays.hpp"
#include "bindings.hpp"
#include "compact_state.hpp"
#include "rmsprop/rmsprop.hpp"
#include "scalars.hpp"

namespace py = pybind11;

namespace rmsprop {
namespace bindings {
namespace {

struct Interval {
  std::uintptr_t begin;
  std::uintptr_t end;
  Origin origin;
  bool written() const { return origin.role != Role::kGrad; }
};

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
  // master_param_obj is used when want_master is true and the param is 16-bit; the
  // square_avg_scale only when the tensor's state is 8-bit (group_state and its size decide).
  void add_tensor(Group& out, long long index, py::handle param_obj, py::handle grad_obj,
                  py::handle square_avg_obj, py::handle square_avg_scale_obj,
                  py::handle grad_avg_obj, py::handle momentum_buffer_obj,
                  py::handle master_param_obj, bool want_master, StateDtype group_state,
                  long long step) {
    const Origin param_origin{Role::kParam, index};
    py::array param = checked_array(param_obj, param_origin, namer, nullptr);
    add_interval(param, param_origin);
    keep_alive.push_back(param);
    const StateDtype state = tensor_state_dtype(group_state, param, namer, index);
    const bool compact = state != StateDtype::kFloat;
    if (state == StateDtype::kEightBit && out.options.centered) {
      throw py::value_error("centered=True is not supported with state_dtype='8bit' (v - "
                            "grad_avg^2 cancels in 8 bits); use state_dtype='bfloat16'");
    }
    const auto checked = [&](py::handle obj, Role role) {
      const Origin origin{role, index};
      if (!obj || obj.is_none()) {
        if (!missing_state_is_error) throw MissingState{};
        throw py::value_error(namer(role, index) + " is missing; " +
                              (namer.functional ? "pass it" : "it was removed from the state") +
                              " (centered=True needs grad_avg, momentum > 0 needs "
                              "momentum_buffer)");
      }
      const bool quantized = compact && role != Role::kMasterParam && role != Role::kGrad;
      const CompactArray kind = role == Role::kSquareAvgScale ? CompactArray::kScales
                                : role == Role::kSquareAvg && state == StateDtype::kEightBit
                                    ? CompactArray::kCodes
                                    : CompactArray::kBfloat16;
      if (!quantized && role != Role::kGrad && holds_compact_state(obj)) {
        throw py::type_error(namer(role, index) + " holds bfloat16/8-bit state but this param's "
                             "state is float (state_dtype='float32', or a tensor below 4096 "
                             "elements); keep a group's state_dtype fixed after its first step");
      }
      py::array a = quantized ? checked_compact_array(obj, origin, namer, param, kind)
                              : checked_array(obj, origin, namer, &param);
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
    std::optional<py::array> scales;
    if (state == StateDtype::kEightBit) scales = checked(square_avg_scale_obj, Role::kSquareAvgScale);
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
      if constexpr (std::is_same_v<S, float>) {
        if (compact) point_at_compact_state(span, state, square_avg, scales, grad_avg, momentum_buffer);
      }
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
    const StateDtype group_state = state_dtype_from(dict_item(group, key.state_dtype), "");
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
                          dict_item(state, key.square_avg),
                          dict_item(state, key.square_avg_scale),
                          dict_item(state, key.grad_avg), dict_item(state, key.momentum_buffer),
                          dict_item(state, key.master_param), want_master, group_state,
                          step + 1);
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
                     py::handle step_obj, py::handle square_avg_scale, py::handle state_dtype) {
  Parser parser{Namer{true}, true, {}, {}};
  std::vector<Group> parsed(1);
  parsed[0].options = options_from(options);
  validate(parsed[0].options);
  const long long step = as_step(step_obj, [] { return std::string("step"); });
  const StateDtype group_state = state_dtype_from(state_dtype, "");
  parser.add_tensor(parsed[0], 0, param, grad, square_avg, square_avg_scale, grad_avg,
                    momentum_buffer, master_param, !master_param.is_none(), group_state, step);
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
        py::arg("square_avg_scale") = py::none(), py::arg("state_dtype") = py::none(),
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

