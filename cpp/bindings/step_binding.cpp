// Python entry point of the step: turns lists of NumPy arrays into TensorSpans without copying,
// refuses anything that cannot be updated in place, checks that no buffers overlap, and only
// then releases the GIL and runs every group. Must not contain math.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>
#include "arrays.hpp"
#include "bindings.hpp"
#include "compact_state.hpp"
#include "parser.hpp"
#include "rmsprop/rmsprop.hpp"
#include "scalars.hpp"

namespace py = pybind11;

namespace rmsprop {
namespace bindings {
namespace {

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
    total += g.rows.elements();
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
    g.rows.run(g.options);
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
    finite = finite && g.rows.grads_finite();
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
// Everything a param's step reads from Python, as strong references: collected before any
// array is checked, so no Python code (a hostile __eq__ met in a dict lookup, say) runs between
// a check and the kernel, and nothing the step uses can be freed under it.
struct TensorRefs {
  long long index;
  py::object param, grad, state, square_avg, grad_avg, momentum_buffer, master_param;
  py::object square_avg_scale;
  long long step;
  std::optional<Placement> placement;
  std::vector<py::object> addends;
};

struct GroupRefs {
  Options options;
  bool want_master;
  StateDtype state_dtype;
  std::vector<TensorRefs> tensors;
};

// The items of a list or tuple, owned: the sequence may be edited while the step is parsed.
std::vector<py::object> items_of(py::handle sequence) {
  const py::ssize_t n = PySequence_Fast_GET_SIZE(sequence.ptr());
  PyObject** items = PySequence_Fast_ITEMS(sequence.ptr());
  std::vector<py::object> out;
  out.reserve(static_cast<std::size_t>(n));
  for (py::ssize_t i = 0; i < n; ++i) out.push_back(py::reinterpret_borrow<py::object>(items[i]));
  return out;
}

// A (rounding_stream, index_offset, tensor_size) triple of exact non-negative Python ints: read
// without running any of the objects' own Python code.
Placement placement_of(const py::object& entry) {
  static const char* const kWhat =
      "placement entries must be (rounding_stream, index_offset, tensor_size) triples of ints "
      "in [0, 2**64)";
  const auto part = [&](py::ssize_t i) {
    PyObject* item = PyTuple_GET_ITEM(entry.ptr(), i);
    if (PyLong_CheckExact(item)) {
      const unsigned long long value = PyLong_AsUnsignedLongLong(item);
      if (!(value == static_cast<unsigned long long>(-1) && PyErr_Occurred())) return value;
      PyErr_Clear();
    }
    throw py::type_error(kWhat);
  };
  if (!PyTuple_Check(entry.ptr()) || PyTuple_GET_SIZE(entry.ptr()) != 3) {
    throw py::type_error(kWhat);
  }
  return {part(0), part(1), part(2)};
}

// Runs parse() and puts "param group k: " before a refusal, as the constructor words it.
template <class Parse>
auto in_group(std::size_t k, Parse&& parse) {
  const auto prefixed = [k](const char* what) {
    return "param group " + std::to_string(k) + ": " + what;
  };
  try {
    return parse();
  } catch (const py::type_error& e) {
    throw py::type_error(prefixed(e.what()));
  } catch (const py::value_error& e) {
    throw py::value_error(prefixed(e.what()));
  } catch (const std::invalid_argument& e) {
    throw py::value_error(prefixed(e.what()));
  }
}

// The optimizer's step: groups are the param-group dicts; grads and states (dicts with
// "step", "square_avg", ...) are aligned with all params in group order. Params whose grad is
// None are skipped. Each state's "step" is incremented only after every group ran.
// Returns kStateMissing, having changed nothing, when a stepped param's state lacks a buffer
// and create_state_first is true: the caller then creates the buffers and calls again. With
// skip_if_nonfinite, returns kSkippedNonfinite, having changed nothing, if any gradient holds
// an inf or NaN. placement, None or a list aligned with states of (rounding_stream,
// index_offset, tensor_size) triples of non-negative ints, says where each tensor sits in a
// larger one (a shard piece); by default a tensor is its own whole, with its index as stream.
// addends, None or a list aligned with grads of None or lists of arrays, gives gradients the
// kernel adds to each grad in order as it reads it (TensorSpan::grad_addends).
int step_optimizer(py::list groups_list, py::handle grads_obj, py::list states_list,
                   bool create_state_first, bool skip_if_nonfinite, py::object placement,
                   py::object addends) {
  if (!PyList_Check(grads_obj.ptr()) && !PyTuple_Check(grads_obj.ptr())) {
    throw py::type_error("grads must be a list with one gradient per param, got " +
                         describe_type(grads_obj) +
                         (py::isinstance<py::array>(grads_obj) ?
                              " (wrap a single gradient: step([grad]))" : ""));
  }
  // Owned copies first; from here on the caller's lists may change without harm.
  const std::vector<py::object> groups = items_of(groups_list);
  const std::vector<py::object> grads = items_of(grads_obj);
  const std::vector<py::object> states = items_of(states_list);
  const std::size_t total = states.size();
  if (grads.size() != total) {
    throw py::value_error("step() got " + std::to_string(grads.size()) + " gradients for " +
                          std::to_string(total) +
                          " params; pass one per param in param-group order (None skips one)");
  }
  std::vector<py::object> placements;
  if (!placement.is_none()) {
    if (!PyList_Check(placement.ptr())) {
      throw py::type_error("placement must be None or a list with one triple per state");
    }
    placements = items_of(placement);
    if (placements.size() != total) {
      throw py::value_error("placement must be None or a list with one triple per state");
    }
  }
  std::vector<py::object> addend_lists;
  if (!addends.is_none()) {
    const char* wanted = "addends must be None or a list with one entry (None or a list of "
                         "arrays) per gradient";
    if (!PyList_Check(addends.ptr())) throw py::type_error(wanted);
    addend_lists = items_of(addends);
    if (addend_lists.size() != total) throw py::value_error(wanted);
    if (skip_if_nonfinite) {
      throw py::value_error("addends cannot be combined with skip_if_nonfinite (the check "
                            "needs the summed gradient); sum the gradients first");
    }
  }
  const Keys& key = keys();
  // Phase 1: read every hyper-parameter and collect every object the step will use.
  std::vector<GroupRefs> collected(groups.size());
  std::size_t offset = 0;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const py::object& group = groups[g];
    GroupRefs& out = collected[g];
    out.options = in_group(g, [&] {
      Options options = options_from(group);
      validate(options);
      return options;
    });
    const py::object params_obj = dict_item(group, key.params);
    if (!params_obj || !PyList_Check(params_obj.ptr())) {
      throw py::type_error("param group " + std::to_string(g) + ": needs a 'params' list");
    }
    const std::vector<py::object> params = items_of(params_obj);
    const py::object master_flag = dict_item(group, key.master_weights);
    out.want_master =
        master_flag && in_group(g, [&] { return as_bool(master_flag, "master_weights"); });
    const py::object state_dtype_obj = dict_item(group, key.state_dtype);
    out.state_dtype = in_group(g, [&] { return state_dtype_from(state_dtype_obj, ""); });
    if (offset + params.size() > total) {
      throw py::value_error("the param groups hold more params than there are gradients");
    }
    out.tensors.reserve(params.size());
    for (std::size_t k = 0; k < params.size(); ++k) {
      const std::size_t index = offset + k;
      if (grads[index].is_none()) continue;
      const py::object& state = states[index];
      if (!PyDict_Check(state.ptr())) throw py::type_error("internal: a state is not a dict");
      // Buffers the options do not use are not looked up (nor checked).
      const auto buffer = [&](bool needed, PyObject* name) {
        return needed ? dict_item(state, name) : py::object();
      };
      TensorRefs t{static_cast<long long>(index), params[k], grads[index], state,
                   dict_item(state, key.square_avg),
                   buffer(out.options.centered, key.grad_avg),
                   buffer(out.options.momentum > 0.0, key.momentum_buffer),
                   buffer(out.want_master, key.master_param),
                   buffer(out.state_dtype == StateDtype::kEightBit, key.square_avg_scale), 0,
                   std::nullopt};
      if (!placements.empty()) t.placement = placement_of(placements[index]);
      if (!addend_lists.empty() && !addend_lists[index].is_none()) {
        const py::object& list = addend_lists[index];
        if (!PyList_Check(list.ptr())) {
          throw py::type_error("addends[" + std::to_string(index) + "] must be None or a list "
                               "of arrays");
        }
        t.addends = items_of(list);
        for (const py::object& a : t.addends) {
          if (a.is_none()) {
            throw py::type_error("addends[" + std::to_string(index) + "] holds None; pass "
                                 "only arrays");
          }
        }
      }
      const py::object step_obj = dict_item(state, key.step);
      if (step_obj) {
        t.step = as_step(step_obj, [&] { return "state[" + std::to_string(index) + "]['step']"; });
      }
      out.tensors.push_back(std::move(t));
    }
    offset += params.size();
  }
  if (offset != total) throw py::value_error("internal: param groups and grads differ in length");
  // Phase 2: check every array and build the spans; no Python code runs here.
  Parser parser{Namer{false}, !create_state_first, {}, {}, -1};
  parser.keep_alive.reserve(4 * total);
  parser.intervals.reserve(4 * total);
  std::vector<Group> parsed(collected.size());
  for (std::size_t g = 0; g < collected.size(); ++g) {
    parsed[g].options = collected[g].options;
    for (const TensorRefs& t : collected[g].tensors) {
      try {
        parser.group = static_cast<long long>(g);
        parser.placement = t.placement;
        parser.addends = t.addends;
        parser.add_tensor(parsed[g], t.index, t.param, t.grad, t.square_avg,
                          t.square_avg_scale, t.grad_avg, t.momentum_buffer, t.master_param,
                          collected[g].want_master, collected[g].state_dtype, t.step + 1);
      } catch (const MissingState&) {
        return static_cast<int>(StepResult::kStateMissing);
      }
    }
  }
  parser.check_overlaps();
  if (skip_if_nonfinite && !all_grads_finite(parsed)) {
    return static_cast<int>(StepResult::kSkippedNonfinite);
  }
  run_groups(parsed);
  for (const GroupRefs& group : collected) {
    for (const TensorRefs& t : group.tensors) {
      if (PyDict_SetItem(t.state.ptr(), key.step, py::int_(t.step + 1).ptr()) != 0) {
        throw py::error_already_set();
      }
    }
  }
  return static_cast<int>(StepResult::kApplied);
}

void step_functional(py::tuple options, py::handle param, py::handle grad, py::handle square_avg,
                     py::handle grad_avg, py::handle momentum_buffer, py::handle master_param,
                     py::handle step_obj, py::handle square_avg_scale, py::handle state_dtype) {
  Parser parser{Namer{true}, true, {}, {}, -1};
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
        py::arg("placement") = py::none(), py::arg("addends") = py::none(),
        "Validate every group, then run one fused step per group with the GIL released.\n\n"
        "groups are the param-group dicts (hyper-parameters and 'params'); grads and states\n"
        "(dicts) are aligned with all params. Nothing is written unless every\n"
        "input is valid; each stepped state's 'step' is incremented afterwards. Returns 0\n"
        "(applied), 1 (create_state_first and a state lacks a buffer) or 2\n"
        "(skip_if_nonfinite and a gradient is inf/NaN); nothing changes unless 0.\n"
        "placement: None, or one (rounding_stream, index_offset, tensor_size) triple per\n"
        "state for tensors that are pieces of larger ones (the whole tensor's\n"
        "stochastic-rounding noise and state storage; 8-bit pieces span whole blocks).\n"
        "addends: None, or per grad None or a list of arrays the step adds to it in order,\n"
        "((grad + a0) + a1) + ..., as it reads it (float32/float64 params).");
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

