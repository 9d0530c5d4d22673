// The kernel compiled for the avx512 level (flags set on this object only, in CMakeLists.txt).
// Must contain nothing but the instantiation.
#define RMSPROP_ISA_NS avx512
#include "kernel_impl.hpp"
