// Turning one step's Python objects into TensorSpans for the core, per group: the array checks
// and the overlap check, with strong references to everything kept. Shared by the binding
// files. Must not contain math.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <list>
#include <optional>
#include <vector>

#include "arrays.hpp"
#include "rmsprop/rmsprop.hpp"
#include "rows_binding.hpp"

namespace rmsprop {
namespace bindings {

namespace py = pybind11;

// A shard piece's tensor: its rounding stream (the whole tensor's index), the piece's offset in
// it, and the whole tensor's element count (which decides 8-bit versus float state).
struct Placement {
  std::uint64_t rounding_stream;
  std::uint64_t index_offset;
  std::uint64_t tensor_size;
};

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
  RowGroup rows;  // params stepped with a RowGrad

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
  long long group = -1;  // the param group being parsed (the optimizer), else -1
  // Where the next tensor sits in a larger one: set by the MPI sharder, whose shard pieces must
  // draw the whole tensor's stochastic-rounding noise and get the whole tensor's state storage.
  std::optional<Placement> placement;
  // Gradients the step adds to the next tensor's grad, in order (TensorSpan::grad_addends):
  // the MPI sharder's other ranks' gradients, summed in the kernel's pass.
  std::vector<py::object> addends;
  // The spans' addend pointer lists: a list keeps earlier spans' pointers valid and, unlike a
  // deque, allocates nothing when no tensor has addends (every plain step builds a Parser).
  std::list<std::vector<const float*>> f32_addends;
  std::list<std::vector<const double*>> f64_addends;

  void add_interval(const py::array& a, const Origin& origin);
  // Checks one param with its gradient and state and appends it to `out`. `grad_avg` and
  // `momentum_buffer` are looked at only when the options need them; null means absent.
  // master_param_obj is used when want_master is true and the param is 16-bit; the
  // square_avg_scale only when the tensor's state is 8-bit (group_state and its size decide).
  void add_tensor(Group& out, long long index, py::handle param_obj, py::handle grad_obj,
                  py::handle square_avg_obj, py::handle square_avg_scale_obj,
                  py::handle grad_avg_obj, py::handle momentum_buffer_obj,
                  py::handle master_param_obj, bool want_master, StateDtype group_state,
                  long long step);
  // Writing through one buffer while reading or writing another that shares its bytes would
  // break the kernel's no-aliasing assumption and silently corrupt results.
  void check_overlaps();
};

}  // namespace bindings
}  // namespace rmsprop
