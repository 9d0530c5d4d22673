// Pieces of the dense driver (dispatch.cpp) that other drivers over the same kernels reuse: the
// active kernel table, the coefficients and variant of a step (options.cpp), the thread policy
// and the check helper.
// Must not contain intrinsics or element-wise math.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "kernel.hpp"
#include "rmsprop/rmsprop.hpp"

namespace rmsprop {
namespace detail {

// Checks run on every step, so the message is only built when the check fails.
template <class MakeMessage>
void require(bool ok, MakeMessage&& make_message) {
  if (!ok) throw std::invalid_argument(make_message());
}

KernelTable active_kernel_table();
Variant variant_of(const Options& options);
// The coefficients a dense step of this tensor (step count, rounding stream) uses.
template <class T>
Coefficients<T> coefficients_of(const Options& options, std::int64_t step, std::uint64_t stream);
// Threads worth using for `elements` elements of work: 1 below the grain, and 1 in a process
// that may not enter an OpenMP region (a forked child).
int threads_for_work(std::size_t elements);

}  // namespace detail
}  // namespace rmsprop
