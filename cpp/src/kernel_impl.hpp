// The RMSProp update, written once over a vector type and instantiated for every Variant. Each
// ISA translation unit defines RMSPROP_ISA_NS and includes this file once; the compile flags of
// that unit decide the registers. Only kernel_table() has external linkage: a shared inline
// helper compiled with AVX-512 must never be what the baseline path calls.
// Must not contain threading, allocation or validation: it is a pure single-threaded pass.
#pragma once

#include "kernel.hpp"
#include "simd.hpp"

namespace rmsprop {
namespace detail {
namespace RMSPROP_ISA_NS {
namespace {

template <class V, class T>
struct Broadcast {
  V grad_sign, lr, weight_decay, lr_weight_decay, alpha, one_minus_alpha, inv_bias_correction,
      eps, momentum, momentum_in_scale, momentum_out_scale;
  explicit Broadcast(const Coefficients<T>& c)
      : grad_sign(V::broadcast(c.grad_sign)),
        lr(V::broadcast(c.lr)),
        weight_decay(V::broadcast(c.weight_decay)),
        lr_weight_decay(V::broadcast(c.lr_weight_decay)),
        alpha(V::broadcast(c.alpha)),
        one_minus_alpha(V::broadcast(c.one_minus_alpha)),
        inv_bias_correction(V::broadcast(c.inv_bias_correction)),
        eps(V::broadcast(c.eps)),
        momentum(V::broadcast(c.momentum)),
        momentum_in_scale(V::broadcast(c.momentum_in_scale)),
        momentum_out_scale(V::broadcast(c.momentum_out_scale)) {}
};

// One step on V::kLanes elements starting at index i. The operation order here IS the rounding
// contract: Wide and Scalar run exactly this sequence, so body and tail agree bit for bit.
template <bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay, bool kEpsInSqrt,
          class V, class T>
inline void update_lanes(const Broadcast<V, T>& c, const TensorSpan<T>& t, std::size_t i) {
  V g = V::load(t.grad + i) * c.grad_sign;
  V p = V::load(t.param + i);
  if constexpr (kWeightDecay == WeightDecayMode::kDecoupled) {
    p = p - c.lr_weight_decay * p;
  } else if constexpr (kWeightDecay == WeightDecayMode::kCoupled) {
    g = g + c.weight_decay * p;
  }
  const V v = c.alpha * V::load(t.square_avg + i) + c.one_minus_alpha * (g * g);
  v.store(t.square_avg + i);
  V s = v * c.inv_bias_correction;
  if constexpr (kCentered) {
    const V ga = c.alpha * V::load(t.grad_avg + i) + c.one_minus_alpha * g;
    ga.store(t.grad_avg + i);
    const V ga_hat = ga * c.inv_bias_correction;
    s = s - ga_hat * ga_hat;
  }
  // v - ga^2 can round below zero for near-constant gradients; torch, optax and Keras take the
  // square root of that and return NaN. Clamping changes nothing wherever they are finite.
  s = max_with_zero(s);
  V denominator;
  if constexpr (kEpsInSqrt) {
    denominator = sqrt(s + c.eps);
  } else {
    denominator = sqrt(s) + c.eps;
  }
  const V u = g / denominator;
  if constexpr (kMomentum == MomentumMode::kNone) {
    p = p - c.lr * u;
  } else {
    const V scaled_u = c.momentum_in_scale * u;
    const V m = c.momentum * V::load(t.momentum_buffer + i) + scaled_u;
    m.store(t.momentum_buffer + i);
    if constexpr (kMomentum == MomentumMode::kNesterov) {
      p = p - c.momentum_out_scale * (scaled_u + c.momentum * m);
    } else {
      p = p - c.momentum_out_scale * m;
    }
  }
  p.store(t.param + i);
}

template <class T, bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay,
          bool kEpsInSqrt>
void update_range(const Coefficients<T>& coefficients, const TensorSpan<T>& tensor,
                  std::size_t begin, std::size_t end) {
  using W = Wide<T>;
  using S = Scalar<T>;
  const Broadcast<W, T> wide(coefficients);
  std::size_t i = begin;
  for (; i + W::kLanes <= end; i += W::kLanes) {
    update_lanes<kCentered, kMomentum, kWeightDecay, kEpsInSqrt>(wide, tensor, i);
  }
  if (i < end) {
    const Broadcast<S, T> scalar(coefficients);
    for (; i < end; ++i) {
      update_lanes<kCentered, kMomentum, kWeightDecay, kEpsInSqrt>(scalar, tensor, i);
    }
  }
}

// Turns the run-time Variant into template arguments, one level per choice, so the branch is
// taken once per call and never inside the loop.
template <class T, bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay>
void select_eps(const Variant& v, const Coefficients<T>& c, const TensorSpan<T>& t,
                std::size_t b, std::size_t e) {
  if (v.eps_in_sqrt) {
    update_range<T, kCentered, kMomentum, kWeightDecay, true>(c, t, b, e);
  } else {
    update_range<T, kCentered, kMomentum, kWeightDecay, false>(c, t, b, e);
  }
}

template <class T, bool kCentered, MomentumMode kMomentum>
void select_weight_decay(const Variant& v, const Coefficients<T>& c, const TensorSpan<T>& t,
                         std::size_t b, std::size_t e) {
  switch (v.weight_decay) {
    case WeightDecayMode::kNone:
      return select_eps<T, kCentered, kMomentum, WeightDecayMode::kNone>(v, c, t, b, e);
    case WeightDecayMode::kCoupled:
      return select_eps<T, kCentered, kMomentum, WeightDecayMode::kCoupled>(v, c, t, b, e);
    case WeightDecayMode::kDecoupled:
      return select_eps<T, kCentered, kMomentum, WeightDecayMode::kDecoupled>(v, c, t, b, e);
  }
}

template <class T, bool kCentered>
void select_momentum(const Variant& v, const Coefficients<T>& c, const TensorSpan<T>& t,
                     std::size_t b, std::size_t e) {
  switch (v.momentum) {
    case MomentumMode::kNone:
      return select_weight_decay<T, kCentered, MomentumMode::kNone>(v, c, t, b, e);
    case MomentumMode::kHeavyBall:
      return select_weight_decay<T, kCentered, MomentumMode::kHeavyBall>(v, c, t, b, e);
    case MomentumMode::kNesterov:
      return select_weight_decay<T, kCentered, MomentumMode::kNesterov>(v, c, t, b, e);
  }
}

template <class T>
void update(const Variant& v, const Coefficients<T>& c, const TensorSpan<T>& t, std::size_t b,
            std::size_t e) {
  if (v.centered) {
    select_momentum<T, true>(v, c, t, b, e);
  } else {
    select_momentum<T, false>(v, c, t, b, e);
  }
}

// Same traffic as the plain step (read p, g, v; write p, v) with one add and one multiply per
// array, so its speed is the memory limit the real step is measured against.
void roofline(float* p, const float* g, float* v, std::size_t begin, std::size_t end) {
  using W = Wide<float>;
  const W half = W::broadcast(0.5f);
  std::size_t i = begin;
  for (; i + W::kLanes <= end; i += W::kLanes) {
    const W gi = W::load(g + i);
    (W::load(v + i) + gi).store(v + i);
    (W::load(p + i) - half * gi).store(p + i);
  }
  for (; i < end; ++i) {
    v[i] = v[i] + g[i];
    p[i] = p[i] - 0.5f * g[i];
  }
}

}  // namespace

KernelTable kernel_table() { return {&update<float>, &update<double>, &roofline}; }

}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
