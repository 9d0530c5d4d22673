// The kernel compiled for the avx2 level (flags set on this object only, in CMakeLists.txt).
// Must contain nothing but the instantiation.
#define RMSPROP_ISA_NS avx2
#include "kernel_impl.hpp"
