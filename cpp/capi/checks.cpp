// Checks behind the C API (see checks.hpp). Must not contain math or exported symbols.
#include "checks.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace rmsprop {
namespace capi {
namespace {

std::string number(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", x);
  return buffer;
}

bool flag(std::int32_t value, const char* name) {
  if (value != 0 && value != 1) {
    throw Error(RMSPROP_ERROR_INVALID_ARGUMENT,
                std::string(name) + " must be 0 or 1, got " + std::to_string(value));
  }
  return value == 1;
}

// The core's float32 range refusal (float32_range_problem), as the Python bindings word it.
void check_float_range(const Options& o) {
  const std::optional<Float32RangeProblem> problem = float32_range_problem(o);
  if (!problem) return;
  throw Error(RMSPROP_ERROR_INVALID_ARGUMENT,
              std::string(problem->name) + " = " + number(problem->value) +
                  (problem->rounds_to_zero ? " rounds to 0 in float32"
                                           : " is beyond float32's range") +
                  ", in which float32 and 16-bit params are updated");
}

}  // namespace

rmsprop_options default_options() {
  const Options d;
  rmsprop_options o;
  std::memset(&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.lr = d.lr;
  o.alpha = d.alpha;
  o.eps = d.eps;
  o.weight_decay = d.weight_decay;
  o.momentum = d.momentum;
  o.grad_scale = d.grad_scale;
  o.rounding_seed = d.rounding_seed;
  return o;
}

Options read_options(const rmsprop_options* options, bool float32_math) {
  if (options == nullptr) throw Error(RMSPROP_ERROR_NULL_POINTER, "options is NULL");
  const std::uint64_t size = options->struct_size;
  if (size < sizeof(std::uint64_t)) {
    throw Error(RMSPROP_ERROR_INVALID_ARGUMENT,
                "options->struct_size is " + std::to_string(size) +
                    "; set it with rmsprop_options_init(&options, sizeof options)");
  }
  // Far beyond any future version: an uninitialised struct, whose tail we must not scan.
  constexpr std::uint64_t kLargestPlausible = 4096;
  if (size > kLargestPlausible) {
    throw Error(RMSPROP_ERROR_INVALID_ARGUMENT,
                "options->struct_size is " + std::to_string(size) +
                    ", larger than any version of rmsprop_options; set it with "
                    "rmsprop_options_init(&options, sizeof options)");
  }
  // A newer caller's struct: its extra fields must be zero (off / default), or we would
  // silently ignore an option it asked for.
  const auto* bytes = reinterpret_cast<const unsigned char*>(options);
  for (std::uint64_t i = sizeof(rmsprop_options); i < size; ++i) {
    if (bytes[i] != 0) {
      throw Error(RMSPROP_ERROR_UNSUPPORTED,
                  "options set a field at byte " + std::to_string(i) +
                      " that this rmsprop library (version " RMSPROP_VERSION_STRING
                      ") does not know; use a library at least as new as your rmsprop.h");
    }
  }
  // Fields the caller's struct holds completely override the defaults.
  rmsprop_options c = default_options();
  std::memcpy(&c, options, static_cast<std::size_t>(std::min<std::uint64_t>(size, sizeof c)));
  rmsprop_options d = default_options();
  const auto keep_default_beyond = [&](std::size_t offset, std::size_t field_size, void* field,
                                       const void* default_field) {
    if (offset + field_size > size) std::memcpy(field, default_field, field_size);
  };
#define RMSPROP_FIELD(name) \
  keep_default_beyond(offsetof(rmsprop_options, name), sizeof c.name, &c.name, &d.name)
  RMSPROP_FIELD(lr);
  RMSPROP_FIELD(alpha);
  RMSPROP_FIELD(eps);
  RMSPROP_FIELD(weight_decay);
  RMSPROP_FIELD(momentum);
  RMSPROP_FIELD(centered);
  RMSPROP_FIELD(maximize);
  RMSPROP_FIELD(eps_in_sqrt);
  RMSPROP_FIELD(lr_in_momentum);
  RMSPROP_FIELD(nesterov);
  RMSPROP_FIELD(decoupled_weight_decay);
  RMSPROP_FIELD(bias_correction);
  RMSPROP_FIELD(stochastic_rounding);
  RMSPROP_FIELD(grad_scale);
  RMSPROP_FIELD(rounding_seed);
#undef RMSPROP_FIELD

  Options o;
  o.lr = c.lr;
  o.alpha = c.alpha;
  o.eps = c.eps;
  o.weight_decay = c.weight_decay;
  o.momentum = c.momentum;
  o.centered = flag(c.centered, "centered");
  o.maximize = flag(c.maximize, "maximize");
  o.eps_in_sqrt = flag(c.eps_in_sqrt, "eps_in_sqrt");
  o.lr_in_momentum = flag(c.lr_in_momentum, "lr_in_momentum");
  o.nesterov = flag(c.nesterov, "nesterov");
  o.decoupled_weight_decay = flag(c.decoupled_weight_decay, "decoupled_weight_decay");
  o.bias_correction = flag(c.bias_correction, "bias_correction");
  o.stochastic_rounding = flag(c.stochastic_rounding, "stochastic_rounding");
  o.grad_scale = c.grad_scale;
  o.rounding_seed = c.rounding_seed;
  try {
    validate(o);
  } catch (const std::invalid_argument& e) {
    throw Error(RMSPROP_ERROR_INVALID_ARGUMENT, e.what());
  }
  if (float32_math) check_float_range(o);
  return o;
}

void check_buffers(const Buffer* buffers, std::size_t per_tensor, const std::uint64_t* sizes,
                   std::size_t count) {
  struct Interval {
    std::uintptr_t begin;
    std::uintptr_t end;
    std::size_t tensor;
    const Buffer* buffer;
  };
  std::vector<Interval> intervals;
  intervals.reserve(count * per_tensor);
  for (std::size_t k = 0; k < count; ++k) {
    const std::string tensor = "tensors[" + std::to_string(k) + "]";
    for (std::size_t j = 0; j < per_tensor; ++j) {
      const Buffer& b = buffers[k * per_tensor + j];
      const bool optional = b.role[0] == '?';
      const char* role = optional ? b.role + 1 : b.role;
      if (b.data == nullptr) {
        if (optional) continue;
        // An empty tensor may have no storage (std::vector<float>().data() is NULL).
        if (sizes[k] == 0) continue;
        throw Error(RMSPROP_ERROR_NULL_POINTER, tensor + "." + role + " is NULL; pass a buffer of " +
                                                    std::to_string(sizes[k]) + " elements");
      }
      const auto begin = reinterpret_cast<std::uintptr_t>(b.data);
      if (begin % b.element_bytes != 0) {
        throw Error(RMSPROP_ERROR_INVALID_ARGUMENT,
                    tensor + "." + role + " is not aligned to its " +
                        std::to_string(b.element_bytes) + "-byte elements");
      }
      const std::uint64_t limit = std::numeric_limits<std::uintptr_t>::max() - begin;
      if (sizes[k] > limit / b.element_bytes) {
        throw Error(RMSPROP_ERROR_INVALID_ARGUMENT,
                    tensor + ".size = " + std::to_string(sizes[k]) + " is too large");
      }
      if (sizes[k] == 0) continue;
      intervals.push_back({begin, begin + static_cast<std::uintptr_t>(sizes[k] * b.element_bytes),
                           k, &b});
    }
  }
  // Writing through one buffer while another shares its bytes breaks the kernel's no-aliasing
  // assumption: sort by start and compare each with the furthest-reaching earlier ones.
  std::sort(intervals.begin(), intervals.end(),
            [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
  const Interval* furthest_any = nullptr;
  const Interval* furthest_written = nullptr;
  const auto name = [](const Interval& i) {
    const char* role = i.buffer->role[0] == '?' ? i.buffer->role + 1 : i.buffer->role;
    return "tensors[" + std::to_string(i.tensor) + "]." + role;
  };
  for (const Interval& cur : intervals) {
    const Interval* clash = nullptr;
    if (cur.buffer->written && furthest_any && cur.begin < furthest_any->end) clash = furthest_any;
    if (!clash && furthest_written && cur.begin < furthest_written->end) clash = furthest_written;
    if (clash) {
      throw Error(RMSPROP_ERROR_OVERLAP,
                  name(*clash) + " and " + name(cur) +
                      " share memory; every param, grad and state buffer must be separate");
    }
    if (!furthest_any || cur.end > furthest_any->end) furthest_any = &cur;
    if (cur.buffer->written && (!furthest_written || cur.end > furthest_written->end)) {
      furthest_written = &cur;
    }
  }
}

void write_message(char* out, std::uint64_t out_size, const char* message) {
  if (out == nullptr || out_size == 0) return;
  const std::size_t length = std::strlen(message);
  const std::size_t n =
      static_cast<std::size_t>(std::min<std::uint64_t>(length, out_size - 1));
  std::memcpy(out, message, n);
  out[n] = '\0';
}

}  // namespace capi
}  // namespace rmsprop
