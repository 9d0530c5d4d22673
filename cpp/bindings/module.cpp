// The private extension module rmsprop._core: ISA and thread control, build facts, and the step
// (bound in step_binding.cpp). Must not contain math.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.hpp"
#include "rmsprop/rmsprop.hpp"
#include "state_noise.hpp"

namespace py = pybind11;

namespace rmsprop {
namespace bindings {
namespace {

// Test hook: the state noise's words from one named implementation (tests compare every
// implementation this CPU has with the float64 reference's AES).
std::vector<std::uint32_t> noise_words(std::uint64_t key, std::uint64_t first_quad,
                                       std::size_t quads, const std::string& impl) {
  using detail::NoiseImpl;
  const NoiseImpl which = impl == "software" ? NoiseImpl::kSoftware
                          : impl == "aes-ni" ? NoiseImpl::kAesNi
                          : impl == "vaes512" ? NoiseImpl::kVaes512
                                              : throw py::value_error("impl must be 'software', "
                                                                      "'aes-ni' or 'vaes512'");
  std::vector<std::uint32_t> out(4 * quads);
  if (!detail::noise_impl_available(which)) return {};
  detail::fill_noise_words_with(which, detail::make_noise_key(key), first_quad, quads, out.data());
  return out;
}

std::vector<std::string> names(const std::vector<Isa>& isas) {
  std::vector<std::string> out;
  for (Isa isa : isas) out.push_back(isa_name(isa));
  return out;
}

}  // namespace

void bind_control(py::module_& m) {
  m.def("compiled_isas", [] { return names(compiled_isas()); });
  m.def("supported_isas", [] { return names(supported_isas()); });
  m.def("active_isa", [] { return isa_name(active_isa()); });
  m.def("set_isa", [](const std::string& name) { set_isa(isa_from_name(name)); },
        py::arg("name"));
  m.def("limit_isa", [](const std::string& name) { limit_isa(isa_from_name(name)); },
        py::arg("name"));
  m.def("openmp_enabled", &openmp_enabled);
  m.def("get_num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("parallel_grain", &parallel_grain);
  m.def("_noise_words", &noise_words, py::arg("key"), py::arg("first_quad"), py::arg("quads"),
        py::arg("impl"));
}

}  // namespace bindings
}  // namespace rmsprop

PYBIND11_MODULE(_core, m) {
  m.doc() = "rmsprop's C++ core. Private: use the rmsprop package.";
  m.attr("__version__") = RMSPROP_VERSION;
  rmsprop::bindings::bind_control(m);
  rmsprop::bindings::bind_step(m);
}
