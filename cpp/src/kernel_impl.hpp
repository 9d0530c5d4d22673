// The RMSProp update, written once over a vector type and instantiated for every Variant. Each
// ISA translation unit defines RMSPROP_ISA_NS and includes this file once; the compile flags of
// that unit decide the registers. Only kernel_table() has external linkage: a shared inline
// helper compiled with AVX-512 must never be what the baseline path calls.
// Must not contain threading, allocation or validation: it is a pure single-threaded pass.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

#include "kernel.hpp"
#include "simd.hpp"
#include "state_codec.hpp"

namespace rmsprop {
namespace detail {
namespace RMSPROP_ISA_NS {
namespace {

template <class V, class T>
struct Broadcast {
  V grad_sign, lr, weight_decay, lr_weight_decay, alpha, one_minus_alpha, inv_bias_correction,
      eps, momentum, momentum_in_scale, momentum_out_scale, grad_scale, largest;
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
        momentum_out_scale(V::broadcast(c.momentum_out_scale)),
        grad_scale(V::broadcast(c.grad_scale)),
        largest(V::broadcast(std::numeric_limits<T>::max())) {}
};

template <class P>
constexpr bool kSixteenBit = sizeof(P) == 2;

// The gradient, with any addends summed in the span's order (a data-parallel rank-order sum)
// in this pass rather than one of its own. A span without addends pays one compare per lanes.
template <class V, class P, class T>
inline V load_grad(const TensorSpan<P, T>& t, std::size_t i) {
  V g = load_lanes(Tag<V>{}, t.grad + i);
  if constexpr (!kSixteenBit<P>) {
    for (std::size_t k = 0; k < t.grad_addend_count; ++k) {
      g = add_first_nan(g, V::load(t.grad_addends[k] + i));
    }
  }
  return g;
}

// One step on V::kLanes elements starting at index i. The operation order here IS the rounding
// contract: Wide and Scalar run exactly this sequence, so body and tail agree bit for bit.
// Every addition whose two operands can both be NaN is add_first_nan: the left operand as
// written (the SPEC's formula) gives its NaN, on every ISA.
// `noise` is null unless the result is stored with stochastic rounding. `st` reads and writes
// the state in its storage (state_codec.hpp); the math is the same for every storage.
template <bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay, bool kEpsInSqrt,
          bool kUnscale, class V, class P, class T, class State>
inline void update_lanes(const Broadcast<V, T>& c, const TensorSpan<P, T>& t, const State& st,
                         std::size_t i, const std::uint32_t* noise) {
  const auto state_noise = st.template noise<V>(i);
  V g = load_grad<V>(t, i);
  if constexpr (kUnscale) g = g / c.grad_scale;
  g = g * c.grad_sign;
  V p;
  if constexpr (kSixteenBit<P>) {
    p = t.master_param ? V::load(t.master_param + i) : load_lanes(Tag<V>{}, t.param + i);
  } else {
    p = V::load(t.param + i);
  }
  if constexpr (kWeightDecay == WeightDecayMode::kDecoupled) {
    p = p - c.lr_weight_decay * p;
  } else if constexpr (kWeightDecay == WeightDecayMode::kCoupled) {
    g = add_first_nan(g, c.weight_decay * p);
  }
  // ((1-a)*g)*g, torch's order (addcmul): g*g alone would overflow float32 from |g| ~ 1.8e19,
  // ten times earlier than the product torch forms at alpha 0.99, and 0*inf = NaN at alpha 1.
  const V v =
      add_first_nan(c.alpha * st.template load_square_avg<V>(i), (c.one_minus_alpha * g) * g);
  st.store_square_avg(v, i, state_noise);
  V s = v * c.inv_bias_correction;
  if constexpr (kCentered) {
    const V ga =
        add_first_nan(c.alpha * st.template load_grad_avg<V>(i), c.one_minus_alpha * g);
    st.store_grad_avg(ga, i, state_noise);
    const V ga_hat = ga * c.inv_bias_correction;
    // When a huge finite gradient overflows both v and ga^2, inf - inf would be NaN; ga^2
    // saturates at the largest finite value instead, so s = inf and the step is g/inf = 0
    // (torch leaves the param unchanged there too). Identity for every finite ga^2; a NaN
    // ga^2 stays NaN, and a non-finite gradient still makes v NaN or inf/inf = NaN.
    s = s - min_keep_nan(c.largest, ga_hat * ga_hat);
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
    const V m = add_first_nan(c.momentum * st.template load_momentum<V>(i), scaled_u);
    st.store_momentum(m, i, state_noise);
    if constexpr (kMomentum == MomentumMode::kNesterov) {
      p = p - c.momentum_out_scale * add_first_nan(scaled_u, c.momentum * m);
    } else {
      p = p - c.momentum_out_scale * m;
    }
  }
  if constexpr (kSixteenBit<P>) {
    if (t.master_param) p.store(t.master_param + i);
    if constexpr (std::is_same_v<P, bfloat16>) {
      if (noise) return store_lanes_stochastic(p, t.param + i, noise);
    }
  }
  store_lanes(p, t.param + i);
}

struct NoHook {
  void operator()() const {}
};

// How far ahead (elements) the vector loop prefetches: a few hundred ns of streaming.
constexpr std::size_t kAhead = 512;

// Elements [begin, end) with the state in `st`: the vector body, then the scalar tail.
// `param_noise` is null unless bfloat16 params are rounded stochastically.
// `between` runs after each vector of the body: integer work that fills the issue slots left
// while the body waits on its divisions and square roots.
template <bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay, bool kEpsInSqrt,
          bool kUnscale, class P, class T, class State, class Hook = NoHook>
inline void update_lanes_range(const ParamNoise* param_noise, const Coefficients<T>& coefficients,
                               const Broadcast<Wide<T>, T>& wide, const TensorSpan<P, T>& tensor,
                               const State& st, std::size_t begin, std::size_t end,
                               Hook&& between = Hook{}) {
  using W = Wide<T>;
  using S = Scalar<T>;
  static_assert(W::kLanes + 3 < ParamNoise::kBuffer, "a vector's quads fit the buffer");
  alignas(64) std::uint32_t buffer[ParamNoise::kBuffer];
  std::size_t i = begin;
  for (; i + W::kLanes <= end; i += W::kLanes) {
    // Streams narrower than a line per vector (16-bit params, compact state) outrun the
    // hardware prefetchers at large sizes: every stream is asked for kAhead elements early.
    prefetch_ahead(tensor.grad + i, kAhead * sizeof(P));
    prefetch_ahead(tensor.param + i, kAhead * sizeof(P));
    if constexpr (kSixteenBit<P>) {
      if (tensor.master_param) prefetch_ahead(tensor.master_param + i, kAhead * sizeof(T));
    } else {
      for (std::size_t k = 0; k < tensor.grad_addend_count; ++k) {
        prefetch_ahead(tensor.grad_addends[k] + i, kAhead * sizeof(P));
      }
    }
    st.prefetch(i, kAhead);
    update_lanes<kCentered, kMomentum, kWeightDecay, kEpsInSqrt, kUnscale>(
        wide, tensor, st, i, param_noise ? param_noise->words<W::kLanes>(i, buffer) : nullptr);
    between();
  }
  if (i < end) {
    const Broadcast<S, T> scalar(coefficients);
    const std::size_t tail = i;  // fewer than W::kLanes elements
    const std::uint32_t* words = param_noise ? param_noise->filled(i, end - i, buffer) : nullptr;
    for (; i < end; ++i) {
      update_lanes<kCentered, kMomentum, kWeightDecay, kEpsInSqrt, kUnscale>(
          scalar, tensor, st, i, words ? words + (i - tail) : nullptr);
    }
  }
}

// The params' noise when bfloat16 params are rounded stochastically (else none: null).
template <class P>
inline std::optional<ParamNoise> param_noise_for(const Variant& variant,
                                                 const Coefficients<StateT<P>>& coefficients,
                                                 const TensorSpan<P, StateT<P>>& tensor) {
  if (!(std::is_same_v<P, bfloat16> && variant.stochastic)) return std::nullopt;
  return ParamNoise(coefficients.rounding_key, tensor.index_offset);
}

// Compact state (bfloat16 or 8-bit), one block of up to 256 elements at a time. 8-bit: the
// update decodes v as it loads it and leaves the new v in a float block, which is encoded with
// the scale of the new v once the block is done. 8-bit ranges start on a block border (the
// dispatcher splits work in whole blocks), so blocks are the tensor's own. bfloat16 state is
// element-wise: its blocks only set where the noise's hash inputs are counted from.
template <bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay, bool kEpsInSqrt,
          bool kUnscale, class P>
void update_range_compact(const Variant& variant, const Coefficients<float>& coefficients,
                          const TensorSpan<P, float>& tensor, std::size_t begin, std::size_t end) {
  constexpr bool kHasMomentum = kMomentum != MomentumMode::kNone;
  const Broadcast<Wide<float>, float> wide(coefficients);
  const CompactState& cs = tensor.compact;
  const std::optional<ParamNoise> param_noise = param_noise_for(variant, coefficients, tensor);
  const ParamNoise* params = param_noise ? &*param_noise : nullptr;
  if (tensor.state_dtype == StateDtype::kBfloat16) {
    BlockNoise noise(coefficients.rounding_key, tensor.index_offset, kCentered);
    const Bfloat16State<kCentered> st{cs.square_avg, cs.grad_avg, cs.momentum_buffer, &noise};
    for (std::size_t b = begin; b < end; b += kEightBitBlock) {
      const std::size_t n = end - b < kEightBitBlock ? end - b : kEightBitBlock;
      noise.start_block(b, n);
      update_lanes_range<kCentered, kMomentum, kWeightDecay, kEpsInSqrt, kUnscale>(
          params, coefficients, wide, tensor, st, b, b + n);
    }
    return;
  }
  if constexpr (!kCentered) {
    // Block k is encoded while block k + 1 is updated, a vector of each in turn (two buffers).
    // The momentum's noise is the update's; the codes' noise is the encoder's.
    alignas(64) float block_v[2][kEightBitBlock];
    BlockNoise momentum_noise(coefficients.rounding_key, tensor.index_offset, false);
    PendingEncode<kHasMomentum> pending(coefficients.rounding_key, tensor.index_offset);
    for (std::size_t b = begin, k = 0; b < end; b += kEightBitBlock, k ^= 1) {
      const std::size_t n = end - b < kEightBitBlock ? end - b : kEightBitBlock;
      if constexpr (kHasMomentum) momentum_noise.start_block(b, n);
      float* scale = cs.square_avg_scales + b / kEightBitBlock;
      const EightBitState<kHasMomentum> st{cs.square_avg_codes, *scale, block_v[k], b,
                                           cs.momentum_buffer, &momentum_noise};
      update_lanes_range<kCentered, kMomentum, kWeightDecay, kEpsInSqrt, kUnscale>(
          params, coefficients, wide, tensor, st, b, b + n, [&pending] { pending.next(); });
      pending.finish();
      pending.start(st, n, scale);
    }
    pending.finish();
  }
}

template <class P, bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay,
          bool kEpsInSqrt, bool kUnscale>
void update_range(const Variant& variant, const Coefficients<StateT<P>>& coefficients,
                  const TensorSpan<P, StateT<P>>& tensor, std::size_t begin, std::size_t end) {
  using T = StateT<P>;
  if constexpr (std::is_same_v<T, float>) {
    if (tensor.state_dtype != StateDtype::kFloat) {
      return update_range_compact<kCentered, kMomentum, kWeightDecay, kEpsInSqrt, kUnscale>(
          variant, coefficients, tensor, begin, end);
    }
  }
  const Broadcast<Wide<T>, T> wide(coefficients);
  const FloatState<T> st{tensor.square_avg, tensor.grad_avg, tensor.momentum_buffer};
  const std::optional<ParamNoise> param_noise = param_noise_for(variant, coefficients, tensor);
  update_lanes_range<kCentered, kMomentum, kWeightDecay, kEpsInSqrt, kUnscale>(
      param_noise ? &*param_noise : nullptr, coefficients, wide, tensor, st, begin, end);
}

// Turns the run-time Variant into template arguments, one level per choice, so the branch is
// taken once per call and never inside the loop. Dividing by grad_scale = 1 is exact but not
// free: the division shares the divider with the step's own sqrt and division, which bound the
// in-cache speed, so it is compiled out whenever grad_scale is 1.
#define RMSPROP_FORWARD v, c, t, b, e
#define RMSPROP_PARAMS                                                                       \
  const Variant &v, const Coefficients<StateT<P>>&c, const TensorSpan<P, StateT<P>>&t,       \
      std::size_t b, std::size_t e

template <class P, bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay,
          bool kEpsInSqrt>
void select_unscale(RMSPROP_PARAMS) {
  if (v.unscale) {
    update_range<P, kCentered, kMomentum, kWeightDecay, kEpsInSqrt, true>(RMSPROP_FORWARD);
  } else {
    update_range<P, kCentered, kMomentum, kWeightDecay, kEpsInSqrt, false>(RMSPROP_FORWARD);
  }
}

template <class P, bool kCentered, MomentumMode kMomentum, WeightDecayMode kWeightDecay>
void select_eps(RMSPROP_PARAMS) {
  if (v.eps_in_sqrt) {
    select_unscale<P, kCentered, kMomentum, kWeightDecay, true>(RMSPROP_FORWARD);
  } else {
    select_unscale<P, kCentered, kMomentum, kWeightDecay, false>(RMSPROP_FORWARD);
  }
}

template <class P, bool kCentered, MomentumMode kMomentum>
void select_weight_decay(RMSPROP_PARAMS) {
  switch (v.weight_decay) {
    case WeightDecayMode::kNone:
      return select_eps<P, kCentered, kMomentum, WeightDecayMode::kNone>(RMSPROP_FORWARD);
    case WeightDecayMode::kCoupled:
      return select_eps<P, kCentered, kMomentum, WeightDecayMode::kCoupled>(RMSPROP_FORWARD);
    case WeightDecayMode::kDecoupled:
      return select_eps<P, kCentered, kMomentum, WeightDecayMode::kDecoupled>(RMSPROP_FORWARD);
  }
}

template <class P, bool kCentered>
void select_momentum(RMSPROP_PARAMS) {
  switch (v.momentum) {
    case MomentumMode::kNone:
      return select_weight_decay<P, kCentered, MomentumMode::kNone>(RMSPROP_FORWARD);
    case MomentumMode::kHeavyBall:
      return select_weight_decay<P, kCentered, MomentumMode::kHeavyBall>(RMSPROP_FORWARD);
    case MomentumMode::kNesterov:
      return select_weight_decay<P, kCentered, MomentumMode::kNesterov>(RMSPROP_FORWARD);
  }
}

template <class P>
void update(RMSPROP_PARAMS) {
  if (v.centered) {
    select_momentum<P, true>(RMSPROP_FORWARD);
  } else {
    select_momentum<P, false>(RMSPROP_FORWARD);
  }
}

#undef RMSPROP_PARAMS
#undef RMSPROP_FORWARD

// Any element with an all-ones exponent (inf or NaN)? Integer compares only, so the compiler
// vectorizes it and no floating-point flag is raised.
template <class P>
bool finite_range(const P* grad, std::size_t begin, std::size_t end) {
  using Bits = std::conditional_t<sizeof(P) == 8, std::uint64_t,
                                  std::conditional_t<sizeof(P) == 4, std::uint32_t,
                                                     std::uint16_t>>;
  constexpr auto kExponent = static_cast<Bits>(sizeof(P) == 8   ? 0x7FF0000000000000ull
                                               : sizeof(P) == 4 ? 0x7F800000ull
                                               : std::is_same_v<P, float16> ? 0x7C00ull
                                                                            : 0x7F80ull);
  bool any_special = false;
  for (std::size_t i = begin; i < end; ++i) {
    Bits bits;
    std::memcpy(&bits, grad + i, sizeof bits);
    any_special |= (bits & kExponent) == kExponent;
  }
  return !any_special;
}

// Same traffic as the plain step (read p, g, v; write p, v) with one add and one multiply per
// array, so its speed is the memory limit the real step is measured against. No software
// prefetch: with so little work per line it measured slower with it (7.9 vs 6.8 ms at 16M).
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

KernelTable kernel_table() {
  return {&update<float>,        &update<double>,       &update<float16>,
          &update<bfloat16>,     &finite_range<float>,  &finite_range<double>,
          &finite_range<float16>, &finite_range<bfloat16>, &roofline};
}

}  // namespace RMSPROP_ISA_NS
}  // namespace detail
}  // namespace rmsprop
