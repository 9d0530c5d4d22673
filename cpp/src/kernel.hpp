// Private interface between the dispatcher and the per-ISA kernel translation units: the update
// variant, the per-tensor coefficients and one entry table per compiled ISA.
// Must not contain intrinsics, OpenMP or anything ISA-specific.
#pragma once

#include <cstddef>

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
};

template <class T>
using UpdateRangeFn = void (*)(const Variant& variant, const Coefficients<T>& coefficients,
                               const TensorSpan<T>& tensor, std::size_t begin, std::size_t end);
using RooflineRangeFn = void (*)(float* p, const float* g, float* v, std::size_t begin,
                                 std::size_t end);

struct KernelTable {
  UpdateRangeFn<float> update_f32;
  UpdateRangeFn<double> update_f64;
  RooflineRangeFn roofline;
};

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
