// The floating-point environment a step runs under: IEEE 754 defaults (round to nearest even,
// subnormals kept, all exceptions masked) whatever the calling thread has set, e.g. FTZ/DAZ
// from torch.set_flush_denormal(True) or a library built with -ffast-math. A separate header
// because dispatch.cpp, which places the guard around every thread's share of the work, must not
// include <immintrin.h>; this needs only the SSE control register (<xmmintrin.h>, baseline
// x86-64). Must not contain anything but the guard.
#pragma once

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
#define RMSPROP_HAVE_MXCSR 1
#else
#include <cfenv>
#endif

namespace rmsprop {
namespace detail {
namespace {

// Sets the IEEE environment for its lifetime and restores the caller's on destruction (also
// when unwinding). Reading MXCSR costs about a nanosecond; it is written only when it differs,
// so a caller already in the default environment pays no serializing write.
class IeeeEnvironment {
 public:
#if defined(RMSPROP_HAVE_MXCSR)
  IeeeEnvironment() : saved_(_mm_getcsr()) {
    if ((saved_ & kControl) != kIeee) _mm_setcsr((saved_ & kFlags) | kIeee);
  }
  ~IeeeEnvironment() {
    // Keep the exception flags the step raised (they are sticky, as for any other code).
    if ((saved_ & kControl) != kIeee) _mm_setcsr((saved_ & kControl) | (_mm_getcsr() & kFlags));
  }
#else
  // No flush-to-zero control elsewhere in standard C++; the rounding mode is what remains.
  IeeeEnvironment() : saved_(std::fegetround()) {
    if (saved_ != FE_TONEAREST) std::fesetround(FE_TONEAREST);
  }
  ~IeeeEnvironment() {
    if (saved_ != FE_TONEAREST) std::fesetround(saved_);
  }
#endif
  IeeeEnvironment(const IeeeEnvironment&) = delete;
  IeeeEnvironment& operator=(const IeeeEnvironment&) = delete;

 private:
#if defined(RMSPROP_HAVE_MXCSR)
  // MXCSR: bits 0-5 sticky exception flags, 6 DAZ, 7-12 exception masks, 13-14 rounding, 15 FTZ.
  static constexpr unsigned kFlags = 0x003Fu;
  static constexpr unsigned kControl = 0xFFC0u;
  static constexpr unsigned kIeee = 0x1F80u;  // all masked, round to nearest, no DAZ/FTZ
  unsigned saved_;
#else
  int saved_;
#endif
};

}  // namespace
}  // namespace detail
}  // namespace rmsprop

#undef RMSPROP_HAVE_MXCSR
