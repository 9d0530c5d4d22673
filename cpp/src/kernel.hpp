// Private interface between the dispatcher and the per-ISA kernel translation units: the update
// variant, the per-tensor coefficients and one entry table per compiled ISA.
// Must not contain intrinsics, OpenMP or anything ISA-specific.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rmsprop/rmsprop.hpp"

namespace rmsprop {
namespace detail {

enum class MomentumMode : int { kNone, kHeavyBall, kNesterov };
enum class WeightDecayMode : int { kNone, kCoupled, kDecoupled };

// The choices that change which operations run. Each combination is its own instantiation of
// the kernel so the inner loop carries no branches.
struct Variant {
  bool centered = false;
  MomentumMode momentum = MomentumMode::kNone;
  WeightDecayMode weight_decay = WeightDecayMode::kNone;
  bool eps_in_sqrt = false;
  bool unscale = false;     // divide gradients by grad_scale (compiled out when it is 1)
  bool stochastic = false;  // bfloat16 params: stochastic rounding of the stored result
};

// Scalars derived in double and rounded once to T (SPEC §2). Choices that can be expressed as an
// exact multiplication by 1 or -1 (maximize, lr inside or outside the momentum buffer, bias
// correction switched off) live here rather than in Variant: x * 1 and x * -1 are exact in IEEE
// arithmetic, so the uniform form gives the same bits as a branch would.
template <class T>
struct Coefficients {
  T grad_sign;            // -1 when maximizing
  T lr;                   // applied to u when there is no momentum
  T weight_decay;         // coupled: g + wd * p
  T lr_weight_decay;      // decoupled: p - (lr * wd) * p
  T alpha;
  T one_minus_alpha;
  T inv_bias_correction;  // 1 / (1 - alpha^t), or exactly 1
  T eps;
  T momentum;
  T momentum_in_scale;    // lr when lr_in_momentum, else 1
  T momentum_out_scale;   // 1 when lr_in_momentum, else lr
  T grad_scale;
  std::uint64_t rounding_key;  // per tensor and step: seeds the stochastic-rounding noise
};

// Compute (and state) type for a storage type: 16-bit params are updated in float.
template <class P>
struct StateOf {
  using type = P;
};
template <>
struct StateOf<float16> {
  using type = float;
};
template <>
struct StateOf<bfloat16> {
  using type = float;
};
template <class P>
using StateT = typename StateOf<P>::type;

template <class P>
using UpdateRangeFn = void (*)(const Variant& variant, const Coefficients<StateT<P>>& coefficients,
                               const TensorSpan<P, StateT<P>>& tensor, std::size_t begin,
                               std::size_t end);
template <class P>
using FiniteRangeFn = bool (*)(const P* grad, std::size_t begin, std::size_t end);
using RooflineRangeFn = void (*)(float* p, const float* g, float* v, std::size_t begin,
                                 std::size_t end);

struct KernelTable {
  UpdateRangeFn<float> update_f32;
  UpdateRangeFn<double> update_f64;
  UpdateRangeFn<float16> update_f16;
  UpdateRangeFn<bfloat16> update_bf16;
  FiniteRangeFn<float> finite_f32;
  FiniteRangeFn<double> finite_f64;
  FiniteRangeFn<float16> finite_f16;
  FiniteRangeFn<bfloat16> finite_bf16;
  RooflineRangeFn roofline;

  template <class P>
  UpdateRangeFn<P> update() const;
  template <class P>
  FiniteRangeFn<P> finite() const;
};

template <> inline UpdateRangeFn<float> KernelTable::update<float>() const { return update_f32; }
template <> inline UpdateRangeFn<double> KernelTable::update<double>() const { return update_f64; }
template <> inline UpdateRangeFn<float16> KernelTable::update<float16>() const { return update_f16; }
template <> inline UpdateRangeFn<bfloat16> KernelTable::update<bfloat16>() const {
  return update_bf16;
}
template <> inline FiniteRangeFn<float> KernelTable::finite<float>() const { return finite_f32; }
template <> inline FiniteRangeFn<double> KernelTable::finite<double>() const { return finite_f64; }
template <> inline FiniteRangeFn<float16> KernelTable::finite<float16>() const { return finite_f16; }
template <> inline FiniteRangeFn<bfloat16> KernelTable::finite<bfloat16>() const {
  return finite_bf16;
}

// splitmix64's finalizer: derives the stochastic-rounding keys from (seed, tensor, step) and a
// salt per buffer; the noise itself is keyed on the element's global index (state_noise.hpp),
// never on the ISA, the thread split or the order of work.
// Internal linkage (static): an inline function shared by ISA objects must not be merged.
static inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One entry point per ISA translation unit; everything else there has internal linkage.
namespace baseline {
KernelTable kernel_table();
}
namespace avx2 {
KernelTable kernel_table();
}
namespace avx512 {
KernelTable kernel_table();
}

}  // namespace detail
}  // namespace rmsprop
