// Compact optimizer state from Python (SPEC §8): the state_dtype names and the checks of the
// uint16 (bfloat16 bits), uint8 (8-bit codes) and float32 (block scales) state arrays.
// Shared by the binding files. Must not contain math.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>

#include "arrays.hpp"
#include "rmsprop/rmsprop.hpp"

namespace rmsprop {
namespace bindings {

namespace py = pybind11;

// "float32" (also the default when absent), "bfloat16" or "8bit"; ValueError otherwise.
StateDtype state_dtype_from(py::handle obj, const char* where);

// The storage of one tensor's state in a group with `group` state_dtype: tensors below
// kEightBitMinElements keep float state under "8bit"; float64 params refuse compact state.
// `tensor_size` is the whole tensor's element count: param.size(), unless param is a shard
// piece, which must store its state as the whole tensor would.
StateDtype tensor_state_dtype(StateDtype group, const py::array& param,
                              std::size_t tensor_size, const Namer& namer, long long index);

// True for a uint16 or uint8 array: compact state met where float state is expected.
bool holds_compact_state(py::handle obj);

enum class CompactArray { kBfloat16, kCodes, kScales };

// The refusals of SPEC §4 for one compact state array of `param`: bfloat16 buffers are uint16
// (or ml_dtypes.bfloat16) and codes uint8, both shaped like param; scales are float32 of shape
// (ceil(param.size / 256),).
py::array checked_compact_array(py::handle obj, const Origin& origin, const Namer& namer,
                                const py::array& param, CompactArray kind);

// Points a span with compact state at its buffers instead of the float ones.
template <class Span>
void point_at_compact_state(Span& span, StateDtype state, const py::array& square_avg,
                            const std::optional<py::array>& scales,
                            const std::optional<py::array>& grad_avg,
                            const std::optional<py::array>& momentum_buffer) {
  span.state_dtype = state;
  span.square_avg = nullptr;
  span.grad_avg = nullptr;
  span.momentum_buffer = nullptr;
  CompactState& c = span.compact;
  if (state == StateDtype::kEightBit) {
    c.square_avg_codes = data_of<std::uint8_t>(square_avg);
    c.square_avg_scales = data_of<float>(*scales);
  } else {
    c.square_avg = data_of<bfloat16>(square_avg);
  }
  c.grad_avg = grad_avg ? data_of<bfloat16>(*grad_avg) : nullptr;
  c.momentum_buffer = momentum_buffer ? data_of<bfloat16>(*momentum_buffer) : nullptr;
}

}  // namespace bindings
}  // namespace rmsprop
