// The kernel compiled for the baseline level (flags set on this object only, in CMakeLists.txt).
// Must contain nothing but the instantiation.
#define RMSPROP_ISA_NS baseline
#include "kernel_impl.hpp"
