// Which kernel runs: CPU detection (CPUID and the OS's saved register state), the table of
// compiled ISA kernels, the RMSPROP_ISA cap and the active choice. Compiled for the baseline
// ISA. Must not contain intrinsics, threading or element-wise math.
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "driver.hpp"
#include "kernel.hpp"
#include "rmsprop/rmsprop.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define RMSPROP_X86_DETECT 1
#endif

namespace rmsprop {
namespace {

using detail::KernelTable;

// ---------------------------------------------------------------------------------------------
// CPU detection. A feature counts only if the CPU has it and the OS saves its registers (XCR0):
// a hypervisor can hide AVX-512 state even when CPUID lists the instructions.

#if defined(RMSPROP_X86_DETECT)
bool cpuid(unsigned leaf, unsigned subleaf, unsigned regs[4]) {
  return __get_cpuid_count(leaf, subleaf, &regs[0], &regs[1], &regs[2], &regs[3]) != 0;
}

unsigned long long xcr0() {
  unsigned eax = 0;
  unsigned edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

Isa detect_best_isa() {
  unsigned l1[4] = {};
  unsigned l7[4] = {};
  unsigned lx[4] = {};
  if (!cpuid(1, 0, l1)) return Isa::kBaseline;
  const bool osxsave = (l1[2] >> 27) & 1;
  if (!osxsave) return Isa::kBaseline;
  const unsigned long long os_state = xcr0();
  const bool os_avx = (os_state & 0x6) == 0x6;       // XMM and YMM state
  const bool os_avx512 = (os_state & 0xE6) == 0xE6;  // plus opmask, ZMM_Hi256, Hi16_ZMM
  cpuid(7, 0, l7);
  cpuid(0x80000001u, 0, lx);
  const auto bit = [](unsigned reg, int b) { return ((reg >> b) & 1u) != 0; };
  // x86-64-v3: everything -march=x86-64-v3 lets the compiler emit.
  const bool v3 = os_avx && bit(l1[2], 28) /*AVX*/ && bit(l1[2], 12) /*FMA*/ &&
                  bit(l1[2], 29) /*F16C*/ && bit(l1[2], 22) /*MOVBE*/ && bit(l7[1], 5) /*AVX2*/ &&
                  bit(l7[1], 3) /*BMI1*/ && bit(l7[1], 8) /*BMI2*/ && bit(lx[2], 5) /*LZCNT*/;
  if (!v3) return Isa::kBaseline;
  // x86-64-v4: AVX512 F, DQ, CD, BW, VL.
  const bool v4 = os_avx512 && bit(l7[1], 16) && bit(l7[1], 17) && bit(l7[1], 28) &&
                  bit(l7[1], 30) && bit(l7[1], 31);
  return v4 ? Isa::kAvx512 : Isa::kAvx2;
}
#else
Isa detect_best_isa() { return Isa::kBaseline; }
#endif

bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::kBaseline:
      return true;
    case Isa::kAvx2:
#if defined(RMSPROP_HAVE_AVX2)
      return true;
#else
      return false;
#endif
    case Isa::kAvx512:
#if defined(RMSPROP_HAVE_AVX512)
      return true;
#else
      return false;
#endif
  }
  return false;
}

KernelTable table_for(Isa isa) {
  switch (isa) {
#if defined(RMSPROP_HAVE_AVX512)
    case Isa::kAvx512:
      return detail::avx512::kernel_table();
#endif
#if defined(RMSPROP_HAVE_AVX2)
    case Isa::kAvx2:
      return detail::avx2::kernel_table();
#endif
    default:
      return detail::baseline::kernel_table();
  }
}

Isa best_usable_isa() {
  static const Isa best = [] {
    Isa isa = detect_best_isa();
    while (!isa_compiled(isa)) isa = static_cast<Isa>(static_cast<int>(isa) - 1);
    return isa;
  }();
  return best;
}

std::atomic<int> isa_cap{static_cast<int>(Isa::kAvx512)};

Isa best_supported_isa() {
  return static_cast<Isa>(
      std::min(static_cast<int>(best_usable_isa()), isa_cap.load(std::memory_order_relaxed)));
}

std::atomic<int>& active_isa_slot() {
  static std::atomic<int> slot{static_cast<int>(best_supported_isa())};
  return slot;
}

}  // namespace

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::kBaseline:
      return "baseline";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

Isa isa_from_name(const std::string& name) {
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
    if (isa_name(isa) == name) return isa;
  }
  throw std::invalid_argument("unknown ISA '" + name +
                              "'; expected one of 'baseline', 'avx2', 'avx512'");
}

std::vector<Isa> compiled_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
    if (isa_compiled(isa)) out.push_back(isa);
  }
  return out;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : compiled_isas()) {
    if (static_cast<int>(isa) <= static_cast<int>(best_supported_isa())) out.push_back(isa);
  }
  return out;
}

Isa active_isa() { return static_cast<Isa>(active_isa_slot().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  if (!isa_compiled(isa)) {
    throw std::invalid_argument("ISA '" + isa_name(isa) + "' is not compiled into this build");
  }
  if (static_cast<int>(isa) > static_cast<int>(best_usable_isa())) {
    throw std::invalid_argument("ISA '" + isa_name(isa) + "' is not supported by this CPU/OS");
  }
  if (static_cast<int>(isa) > isa_cap.load(std::memory_order_relaxed)) {
    throw std::invalid_argument("ISA '" + isa_name(isa) + "' is above the cap set by limit_isa "
                                "(RMSPROP_ISA=" + isa_name(static_cast<Isa>(isa_cap.load())) + ")");
  }
  active_isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

void limit_isa(Isa cap) {
  isa_cap.store(static_cast<int>(cap), std::memory_order_relaxed);
  active_isa_slot().store(static_cast<int>(best_supported_isa()), std::memory_order_relaxed);
}

namespace detail {

KernelTable active_kernel_table() { return table_for(active_isa()); }

}  // namespace detail

}  // namespace rmsprop
