// The array checks of a step (see parser.hpp): Python objects to TensorSpans, every refusal of
// SPEC §4 and the overlap check. Must not contain math or calls into Python other than reading
// the arrays it is given.
#include "parser.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>

#include "compact_state.hpp"
#include "scalars.hpp"

namespace rmsprop {
namespace bindings {

void Parser::add_interval(const py::array& a, const Origin& origin) {
  const auto nbytes = static_cast<std::uintptr_t>(a.nbytes());
  if (nbytes == 0) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(py::detail::array_proxy(a.ptr())->data);
  intervals.push_back({begin, begin + nbytes, origin});
}

void Parser::add_tensor(Group& out, long long index, py::handle param_obj, py::handle grad_obj,
                        py::handle square_avg_obj, py::handle square_avg_scale_obj,
                        py::handle grad_avg_obj, py::handle momentum_buffer_obj,
                        py::handle master_param_obj, bool want_master, StateDtype group_state,
                        long long step) {
  const Origin param_origin{Role::kParam, index};
  py::array param = checked_array(param_obj, param_origin, namer, nullptr);
  add_interval(param, param_origin);
  keep_alive.push_back(param);
  const auto piece_size = static_cast<std::uint64_t>(param.size());
  if (placement && (placement->index_offset > placement->tensor_size ||
                    piece_size > placement->tensor_size - placement->index_offset)) {
    throw py::value_error("the placement of " + namer(Role::kParam, index) + " (offset " +
                          std::to_string(placement->index_offset) + ", tensor size " +
                          std::to_string(placement->tensor_size) + ") does not hold its " +
                          std::to_string(piece_size) + " elements");
  }
  const StateDtype state = tensor_state_dtype(
      group_state, param, placement ? placement->tensor_size : piece_size, namer, index);
  const bool compact = state != StateDtype::kFloat;
  if (state == StateDtype::kEightBit && placement) {
    // A piece owns whole blocks of its tensor (each block's scale comes from all of its
    // elements), so it starts on a block border and ends on one or at the tensor's end.
    const std::uint64_t end = placement->index_offset + piece_size;
    if (placement->index_offset % kEightBitBlock != 0 ||
        (end % kEightBitBlock != 0 && end != placement->tensor_size)) {
      throw py::value_error("the placement of " + namer(Role::kParam, index) + " cuts an 8-bit "
                            "block: with state_dtype='8bit' a piece spans whole blocks of 256 "
                            "elements from its tensor's start (or ends at the tensor's end)");
    }
  }
  if (state == StateDtype::kEightBit && out.options.centered) {
    throw py::value_error("centered=True is not supported with state_dtype='8bit' (v - "
                          "grad_avg^2 cancels in 8 bits); use state_dtype='bfloat16'");
  }
  if (state == StateDtype::kEightBit && is_row_grad(grad_obj)) {
    throw py::value_error(namer(Role::kGrad, index) + " is a RowGrad, but " +
                          namer(Role::kParam, index) + " has 8-bit state (state_dtype='8bit', "
                          "4096 elements or more), which a sparse row update cannot keep: a "
                          "block's scale depends on all 256 of its elements, so the untouched "
                          "rows would be re-quantized. Use state_dtype='bfloat16' or 'float32' "
                          "for this param's group, or pass a dense gradient");
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
    try {
      check_float_range(out.options, [&] { return namer(Role::kParam, index); });
    } catch (const py::value_error& e) {
      if (group < 0) throw;
      throw py::value_error("param group " + std::to_string(group) + ": " + e.what());
    }
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
  // A RowGrad is checked in full (indices in range) here, before anything is written.
  std::optional<RowGradArrays> rows;
  std::optional<py::array> grad;
  if (is_row_grad(grad_obj)) {
    rows = checked_row_grad(grad_obj, index, namer, param);
    for (const py::array& a : {rows->indices, rows->values}) {
      add_interval(a, Origin{Role::kGrad, index});
      keep_alive.push_back(a);
    }
  } else {
    grad = checked(grad_obj, Role::kGrad);
  }
  // Addends are read like the grad and must fit the same way; the kernel sums them in its
  // compute precision, which only float32/float64 params share with the grad.
  std::vector<py::array> addend_arrays;
  if (!addends.empty()) {
    if (rows || sixteen_bit(storage)) {
      throw py::value_error(namer(Role::kGrad, index) + ": gradient addends need a dense "
                            "float32/float64 gradient; sum the gradients first");
    }
    for (std::size_t k = 0; k < addends.size(); ++k) {
      try {
        addend_arrays.push_back(checked(addends[k], Role::kGrad));
      } catch (const py::type_error& e) {
        throw py::type_error("addend " + std::to_string(k) + " of " + e.what());
      } catch (const py::value_error& e) {
        throw py::value_error("addend " + std::to_string(k) + " of " + e.what());
      }
    }
  }
  const py::array square_avg = checked(square_avg_obj, Role::kSquareAvg);
  // std::optional, not an empty py::array: that would allocate a NumPy array every step.
  std::optional<py::array> grad_avg;
  std::optional<py::array> momentum_buffer;
  std::optional<py::array> master_param;
  std::optional<py::array> scales;
  if (state == StateDtype::kEightBit) {
    scales = checked(square_avg_scale_obj, Role::kSquareAvgScale);
  }
  if (need_grad_avg) grad_avg = checked(grad_avg_obj, Role::kGradAvg);
  if (need_momentum) momentum_buffer = checked(momentum_buffer_obj, Role::kMomentumBuffer);
  if (need_master) master_param = checked(master_param_obj, Role::kMasterParam);
  if (step < 1) {
    throw py::value_error((namer.functional ? std::string("step") :
                                              "step of " + namer(Role::kParam, index)) +
                          " must be >= 1 (the step being taken), got " + std::to_string(step));
  }
  if (rows) {
    return out.rows.add(param, *rows, square_avg, grad_avg, momentum_buffer, master_param, step,
                        static_cast<std::uint64_t>(index), state);
  }
  const auto fill = [&](auto& spans) {
    using Span = typename std::decay_t<decltype(spans)>::value_type;
    using P = std::remove_pointer_t<decltype(Span::param)>;
    using S = std::remove_pointer_t<decltype(Span::square_avg)>;
    Span span;
    point_at_state(span, param, square_avg, grad_avg, momentum_buffer, master_param);
    span.grad = data_of<P>(*grad);
    span.size = static_cast<std::size_t>(param.size());
    span.step = step;
    span.rounding_stream =
        placement ? placement->rounding_stream : static_cast<std::uint64_t>(index);
    span.index_offset = placement ? placement->index_offset : 0;
    if constexpr (std::is_same_v<P, float> || std::is_same_v<P, double>) {
      if (!addend_arrays.empty()) {
        auto& lists = [this]() -> auto& {
          if constexpr (std::is_same_v<P, float>) return f32_addends;
          else return f64_addends;
        }();
        std::vector<const P*>& list = lists.emplace_back();
        for (const py::array& a : addend_arrays) list.push_back(data_of<P>(a));
        span.grad_addends = list.data();
        span.grad_addend_count = list.size();
      }
    }
    if constexpr (std::is_same_v<S, float>) {
      if (compact) {
        point_at_compact_state(span, state, square_avg, scales, grad_avg, momentum_buffer);
      }
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

void Parser::check_overlaps() {
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

}  // namespace bindings
}  // namespace rmsprop
