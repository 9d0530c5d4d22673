// Shared declarations of the pybind11 module's binding files. Must not contain math.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>

namespace rmsprop {
namespace bindings {

// The order in which Python passes hyper-parameters to step_groups (one tuple per group).
inline constexpr const char* kOptionNames[] = {
    "lr",       "alpha",    "eps",          "weight_decay",   "momentum",
    "centered", "maximize", "eps_in_sqrt",  "lr_in_momentum", "nesterov",
    "decoupled_weight_decay", "bias_correction", "grad_scale", "stochastic_rounding",
    "rounding_seed"};
inline constexpr std::size_t kOptionCount = sizeof(kOptionNames) / sizeof(kOptionNames[0]);

void bind_step(pybind11::module_& m);
void bind_control(pybind11::module_& m);

}  // namespace bindings
}  // namespace rmsprop
