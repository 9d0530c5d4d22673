// The exported C API of rmsprop.h over the C++ core (rmsprop.hpp): descriptor translation and
// the boundary that turns every exception into a status and a message. Must not contain math,
// and no exception may leave a function defined here.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "checks.hpp"
#include "rmsprop/rmsprop.h"
#include "rmsprop/rmsprop.hpp"

namespace rmsprop {
namespace capi {
namespace {

// Runs fn; any exception becomes a status and a message in the caller's buffer.
template <class Fn>
rmsprop_status guarded(char* message, std::uint64_t message_size, Fn&& fn) noexcept {
  try {
    fn();
    write_message(message, message_size, "");
    return RMSPROP_OK;
  } catch (const Error& e) {
    write_message(message, message_size, e.what());
    return e.status;
  } catch (const std::invalid_argument& e) {
    write_message(message, message_size, e.what());
    return RMSPROP_ERROR_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    write_message(message, message_size, "out of memory");
    return RMSPROP_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    write_message(message, message_size, e.what());
    return RMSPROP_ERROR_INTERNAL;
  } catch (...) {
    write_message(message, message_size, "unknown internal error");
    return RMSPROP_ERROR_INTERNAL;
  }
}

// The C++ span of one C descriptor. The 16-bit descriptors add master_param and a stream.
template <class P, class S, class C>
TensorSpan<P, S> span_of(const C& t, std::size_t index) {
  TensorSpan<P, S> span;
  span.param = reinterpret_cast<P*>(t.param);
  span.grad = reinterpret_cast<const P*>(t.grad);
  span.square_avg = t.square_avg;
  span.grad_avg = t.grad_avg;
  span.momentum_buffer = t.momentum_buffer;
  span.size = static_cast<std::size_t>(t.size);
  span.step = t.step;
  if constexpr (std::is_same_v<C, rmsprop_tensor_16>) {
    span.master_param = t.master_param;
    span.rounding_stream = t.rounding_stream;
  } else {
    span.rounding_stream = index;
  }
  return span;
}

template <class P, class S, class C>
void step_checked(const rmsprop_options* options, const C* tensors, std::uint64_t count) {
  constexpr bool kFloat32Math = !std::is_same_v<P, double>;
  const Options o = read_options(options, kFloat32Math);
  if (count > 0 && tensors == nullptr) {
    throw Error(RMSPROP_ERROR_NULL_POINTER,
                "tensors is NULL but count is " + std::to_string(count));
  }
  if (count > SIZE_MAX / 8) throw Error(RMSPROP_ERROR_INVALID_ARGUMENT, "count is too large");
  const auto n = static_cast<std::size_t>(count);
  constexpr std::size_t kPerTensor = 6;
  std::vector<Buffer> buffers;
  buffers.reserve(n * kPerTensor);
  std::vector<std::uint64_t> sizes(n);
  std::vector<TensorSpan<P, S>> spans;
  spans.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    const C& t = tensors[k];
    if (t.step < 1) {
      throw Error(RMSPROP_ERROR_INVALID_ARGUMENT,
                  "tensors[" + std::to_string(k) + "].step must be >= 1 (the step being taken), "
                  "got " + std::to_string(t.step));
    }
    sizes[k] = t.size;
    if (static_cast<std::uint64_t>(static_cast<std::size_t>(t.size)) != t.size) {
      throw Error(RMSPROP_ERROR_INVALID_ARGUMENT,
                  "tensors[" + std::to_string(k) + "].size does not fit this platform");
    }
    // Buffers the options do not use are ignored, as the Python API ignores them.
    const void* master = nullptr;
    if constexpr (std::is_same_v<C, rmsprop_tensor_16>) master = t.master_param;
    buffers.push_back({t.param, sizeof(P), true, "param"});
    buffers.push_back({t.grad, sizeof(P), false, "grad"});
    buffers.push_back({t.square_avg, sizeof(S), true, "square_avg"});
    buffers.push_back({o.centered ? t.grad_avg : nullptr, sizeof(S), true,
                       o.centered ? "grad_avg" : "?grad_avg"});
    buffers.push_back({o.momentum > 0.0 ? t.momentum_buffer : nullptr, sizeof(S), true,
                       o.momentum > 0.0 ? "momentum_buffer" : "?momentum_buffer"});
    buffers.push_back({master, sizeof(S), true, "?master_param"});
    TensorSpan<P, S> span = span_of<P, S>(t, k);
    if (!o.centered) span.grad_avg = nullptr;
    if (o.momentum == 0.0) span.momentum_buffer = nullptr;
    spans.push_back(span);
  }
  check_buffers(buffers.data(), kPerTensor, sizes.data(), n);
  step(o, spans.data(), spans.size());
}

}  // namespace
}  // namespace capi
}  // namespace rmsprop

using rmsprop::capi::guarded;
using rmsprop::capi::step_checked;

extern "C" {

rmsprop_status rmsprop_options_init(rmsprop_options* options, uint64_t struct_size) {
  if (options == nullptr) return RMSPROP_ERROR_NULL_POINTER;
  if (struct_size < sizeof(uint64_t)) return RMSPROP_ERROR_INVALID_ARGUMENT;
  const rmsprop_options defaults = rmsprop::capi::default_options();
  // An older caller's struct is smaller: write only what it holds; a newer one's extra fields
  // are zero, which is what this library requires of fields it does not know.
  const std::size_t ours = sizeof defaults;
  const std::size_t n = struct_size < ours ? static_cast<std::size_t>(struct_size) : ours;
  std::memcpy(options, &defaults, n);
  if (struct_size > ours) {
    std::memset(reinterpret_cast<unsigned char*>(options) + ours, 0,
                static_cast<std::size_t>(struct_size - ours));
  }
  options->struct_size = struct_size;
  return RMSPROP_OK;
}

rmsprop_status rmsprop_step_f32(const rmsprop_options* options, const rmsprop_tensor_f32* tensors,
                                uint64_t count, char* message, uint64_t message_size) {
  return guarded(message, message_size,
                 [&] { step_checked<float, float>(options, tensors, count); });
}

rmsprop_status rmsprop_step_f64(const rmsprop_options* options, const rmsprop_tensor_f64* tensors,
                                uint64_t count, char* message, uint64_t message_size) {
  return guarded(message, message_size,
                 [&] { step_checked<double, double>(options, tensors, count); });
}

rmsprop_status rmsprop_step_f16(const rmsprop_options* options, const rmsprop_tensor_16* tensors,
                                uint64_t count, char* message, uint64_t message_size) {
  return guarded(message, message_size,
                 [&] { step_checked<rmsprop::float16, float>(options, tensors, count); });
}

rmsprop_status rmsprop_step_bf16(const rmsprop_options* options, const rmsprop_tensor_16* tensors,
                                 uint64_t count, char* message, uint64_t message_size) {
  return guarded(message, message_size,
                 [&] { step_checked<rmsprop::bfloat16, float>(options, tensors, count); });
}

const char* rmsprop_version(void) { return RMSPROP_VERSION_STRING; }

namespace {
const char* static_isa_name(rmsprop::Isa isa) {
  switch (isa) {
    case rmsprop::Isa::kAvx2:
      return "avx2";
    case rmsprop::Isa::kAvx512:
      return "avx512";
    default:
      return "baseline";
  }
}
}  // namespace

const char* rmsprop_active_isa(void) { return static_isa_name(rmsprop::active_isa()); }

int32_t rmsprop_isa_supported(const char* name) {
  if (name == nullptr) return 0;
  for (rmsprop::Isa isa : rmsprop::supported_isas()) {
    if (std::strcmp(static_isa_name(isa), name) == 0) return 1;
  }
  return 0;
}

rmsprop_status rmsprop_set_isa(const char* name, char* message, uint64_t message_size) {
  return guarded(message, message_size, [&] {
    using rmsprop::capi::Error;
    if (name == nullptr) throw Error(RMSPROP_ERROR_NULL_POINTER, "name is NULL");
    const rmsprop::Isa isa = rmsprop::isa_from_name(name);  // invalid_argument if unknown
    try {
      rmsprop::set_isa(isa);
    } catch (const std::invalid_argument& e) {
      throw Error(RMSPROP_ERROR_UNSUPPORTED, e.what());
    }
  });
}

int32_t rmsprop_openmp_enabled(void) { return rmsprop::openmp_enabled() ? 1 : 0; }

int32_t rmsprop_get_num_threads(void) { return rmsprop::num_threads(); }

rmsprop_status rmsprop_set_num_threads(int32_t threads, char* message, uint64_t message_size) {
  return guarded(message, message_size, [&] { rmsprop::set_num_threads(threads); });
}

}  // extern "C"
