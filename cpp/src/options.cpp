// Options of a step: their checks (validate, the float32 range) and what the kernels take from
// them (the Variant that picks a kernel instantiation, the per-tensor Coefficients). Compiled
// for the baseline ISA; nothing element-wise, nothing Python-specific.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "driver.hpp"
#include "kernel.hpp"
#include "rmsprop/rmsprop.hpp"

namespace rmsprop {
namespace {

using detail::Coefficients;
using detail::MomentumMode;
using detail::require;
using detail::Variant;
using detail::WeightDecayMode;

std::string number(double x) {
  std::string s = std::to_string(x);
  return std::isfinite(x) ? s : (std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf"));
}

void require_non_negative(double value, const char* name) {
  require(std::isfinite(value) && value >= 0.0, [&] {
    return std::string(name) + " must be a finite number >= 0, got " + number(value);
  });
}

template <class T>
Coefficients<T> coefficients_for(const Options& o, std::int64_t step, std::uint64_t stream) {
  double inv_bias_correction = 1.0;
  if (o.bias_correction) {
    const double t = static_cast<double>(std::max<std::int64_t>(step, 1));
    inv_bias_correction = 1.0 / (1.0 - std::pow(o.alpha, t));
  }
  const double in_scale = o.lr_in_momentum ? o.lr : 1.0;
  const double out_scale = o.lr_in_momentum ? 1.0 : o.lr;
  return Coefficients<T>{static_cast<T>(o.maximize ? -1.0 : 1.0),
                         static_cast<T>(o.lr),
                         static_cast<T>(o.weight_decay),
                         static_cast<T>(o.lr * o.weight_decay),
                         static_cast<T>(o.alpha),
                         static_cast<T>(1.0 - o.alpha),
                         static_cast<T>(inv_bias_correction),
                         static_cast<T>(o.eps),
                         static_cast<T>(o.momentum),
                         static_cast<T>(in_scale),
                         static_cast<T>(out_scale),
                         static_cast<T>(o.grad_scale),
                         detail::mix64(detail::mix64(detail::mix64(o.rounding_seed) ^ stream) ^
                                       static_cast<std::uint64_t>(step))};
}

Variant variant_for(const Options& o) {
  Variant v;
  v.centered = o.centered;
  v.eps_in_sqrt = o.eps_in_sqrt;
  v.unscale = o.grad_scale != 1.0;
  v.stochastic = o.stochastic_rounding;
  if (o.momentum > 0.0) v.momentum = o.nesterov ? MomentumMode::kNesterov : MomentumMode::kHeavyBall;
  if (o.weight_decay > 0.0) {
    v.weight_decay =
        o.decoupled_weight_decay ? WeightDecayMode::kDecoupled : WeightDecayMode::kCoupled;
  }
  return v;
}

}  // namespace

std::optional<Float32RangeProblem> float32_range_problem(const Options& o) {
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
    if (value > kLargest) return Float32RangeProblem{name, value, false};
  }
  if (o.grad_scale < std::numeric_limits<float>::denorm_min()) {
    return Float32RangeProblem{"grad_scale", o.grad_scale, true};
  }
  return std::nullopt;
}

void validate(const Options& o) {
  require_non_negative(o.lr, "lr");
  require_non_negative(o.eps, "eps");
  require_non_negative(o.weight_decay, "weight_decay");
  require_non_negative(o.momentum, "momentum");
  require(std::isfinite(o.alpha) && o.alpha >= 0.0 && o.alpha <= 1.0,
          [&] { return "alpha must be in [0, 1], got " + number(o.alpha); });
  require(!o.nesterov || o.momentum > 0.0,
          [] { return std::string("nesterov=True requires momentum > 0"); });
  require(!o.bias_correction || o.alpha < 1.0, [] {
    return std::string("bias_correction=True requires alpha < 1 (1 - alpha^t would be 0)");
  });
  require(std::isfinite(o.grad_scale) && o.grad_scale > 0.0,
          [&] { return "grad_scale must be a finite number > 0, got " + number(o.grad_scale); });
}

namespace detail {

Variant variant_of(const Options& options) { return variant_for(options); }
template <class T>
Coefficients<T> coefficients_of(const Options& options, std::int64_t step, std::uint64_t stream) {
  return coefficients_for<T>(options, step, stream);
}
template Coefficients<float> coefficients_of<float>(const Options&, std::int64_t, std::uint64_t);
template Coefficients<double> coefficients_of<double>(const Options&, std::int64_t,
                                                      std::uint64_t);

}  // namespace detail
}  // namespace rmsprop
