// Compact state checks of the bindings (see compact_state.hpp). Must not contain math.
#include "compact_state.hpp"

#include <string>

namespace rmsprop {
namespace bindings {

StateDtype state_dtype_from(py::handle obj, const char* where) {
  if (!obj || obj.is_none()) return StateDtype::kFloat;
  if (PyUnicode_Check(obj.ptr())) {
    const std::string name = py::str(obj);
    if (name == "float32") return StateDtype::kFloat;
    if (name == "bfloat16") return StateDtype::kBfloat16;
    if (name == "8bit") return StateDtype::kEightBit;
  }
  throw py::value_error(std::string(where) + "state_dtype must be 'float32', 'bfloat16' or "
                        "'8bit', got " + std::string(py::repr(obj)));
}

StateDtype tensor_state_dtype(StateDtype group, const py::array& param,
                              std::size_t tensor_size, const Namer& namer, long long index) {
  if (group == StateDtype::kFloat) return group;
  if (storage_of(param) == Storage::kFloat64) {
    throw py::type_error(namer(Role::kParam, index) + " is float64, whose state stays float64; "
                         "state_dtype='bfloat16'/'8bit' is for float32, float16 and bfloat16 "
                         "params (use state_dtype='float32' for this group)");
  }
  if (group == StateDtype::kEightBit && tensor_size < kEightBitMinElements) {
    return StateDtype::kFloat;
  }
  return group;
}

namespace {

// NumPy's stable type numbers.
constexpr int kNpyUbyte = 2;
constexpr int kNpyUshort = 4;
constexpr int kNpyFloat = 11;

}  // namespace

bool holds_compact_state(py::handle obj) {
  if (!py::isinstance<py::array>(obj)) return false;
  const int type_num = reinterpret_cast<const py::detail::PyArrayDescr_Proxy*>(
                           py::detail::array_proxy(obj.ptr())->descr)
                           ->type_num;
  return type_num == kNpyUbyte || type_num == kNpyUshort;
}

py::array checked_compact_array(py::handle obj, const Origin& origin, const Namer& namer,
                                const py::array& param, CompactArray kind) {
  const auto name_of = [&] { return namer(origin.role, origin.index); };
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(name_of() + " must be a numpy.ndarray, got " + describe_type(obj));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  const auto* descr = reinterpret_cast<const py::detail::PyArrayDescr_Proxy*>(
      py::detail::array_proxy(a.ptr())->descr);
  const int type_num = descr->type_num;
  bool dtype_ok = false;
  const char* expected = "";
  switch (kind) {
    case CompactArray::kBfloat16:
      dtype_ok = type_num == kNpyUshort || storage_of(a) == Storage::kBfloat16;
      expected = "uint16 (bfloat16 bit patterns)";
      break;
    case CompactArray::kCodes:
      dtype_ok = type_num == kNpyUbyte;
      expected = "uint8 (8-bit codes)";
      break;
    case CompactArray::kScales:
      dtype_ok = type_num == kNpyFloat;
      expected = "float32 (one scale per block of 256 elements)";
      break;
  }
  if (!dtype_ok) {
    throw py::type_error(name_of() + " has dtype " + dtype_name(a) + "; with this state_dtype it "
                         "is " + expected + ". State created for another state_dtype cannot be "
                         "reused: keep a group's state_dtype fixed after its first step");
  }
  if (descr->byteorder == '>') {
    throw py::value_error(name_of() + " is not in native byte order");
  }
  if (kind == CompactArray::kScales) {
    const auto blocks =
        (static_cast<std::size_t>(param.size()) + kEightBitBlock - 1) / kEightBitBlock;
    if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != blocks) {
      throw py::value_error(name_of() + " has shape " + shape_of(a) + "; it needs (" +
                            std::to_string(blocks) + ",): one scale per 256 elements of " +
                            namer(Role::kParam, origin.index));
    }
  } else if (!same_shape(a, param)) {
    throw py::value_error(name_of() + " has shape " + shape_of(a) + " but " +
                          namer(Role::kParam, origin.index) + " has shape " + shape_of(param) +
                          "; they must match");
  }
  const auto& api = py::detail::npy_api::get();
  const int flags = py::detail::array_proxy(a.ptr())->flags;
  if (!(flags & api.NPY_ARRAY_C_CONTIGUOUS_) || !(flags & api.NPY_ARRAY_ALIGNED_)) {
    throw py::value_error(name_of() + " is not a C-contiguous, aligned array; state is updated "
                          "in place and never copied");
  }
  if (!(flags & api.NPY_ARRAY_WRITEABLE_)) {
    throw py::value_error(name_of() + " is read-only; rmsprop updates it in place");
  }
  return a;
}

}  // namespace bindings
}  // namespace rmsprop
