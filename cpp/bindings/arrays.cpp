// Array checks of the bindings (see arrays.hpp). Must not contain math.
#include "arrays.hpp"

#include <string>

namespace rmsprop {
namespace bindings {

const char* state_key(Role role) {
  switch (role) {
    case Role::kSquareAvg:
      return "square_avg";
    case Role::kGradAvg:
      return "grad_avg";
    case Role::kMomentumBuffer:
      return "momentum_buffer";
    case Role::kMasterParam:
      return "master_param";
    case Role::kSquareAvgScale:
      return "square_avg_scale";
    default:
      return "";
  }
}

std::string describe_type(py::handle obj) { return Py_TYPE(obj.ptr())->tp_name; }

std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.shape(d) != b.shape(d)) return false;
  }
  return true;
}

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    s += std::to_string(a.shape(d));
    if (a.ndim() == 1 || d + 1 < a.ndim()) s += ",";
    if (d + 1 < a.ndim()) s += " ";
  }
  return s + ")";
}

namespace {

// ml_dtypes.bfloat16's scalar type, if ml_dtypes is imported. A bfloat16 array cannot exist
// without it, so we never import it ourselves (run time needs NumPy only).
PyObject* bfloat16_type() {
  static PyObject* type = nullptr;  // a strong reference kept for the process's life
  if (type == nullptr) {
    PyObject* module = PyDict_GetItemString(PyImport_GetModuleDict(), "ml_dtypes");
    if (module != nullptr) {
      type = PyObject_GetAttrString(module, "bfloat16");
      if (type == nullptr) PyErr_Clear();
    }
  }
  return type;
}

// The dtype's descriptor, read directly: a step checks several arrays per param, and creating
// a py::dtype for each costs more than the check. kind, byteorder and type_num sit at the same
// place in NumPy 1 and 2.
const py::detail::PyArrayDescr_Proxy* descr_of(const py::array& a) {
  return reinterpret_cast<const py::detail::PyArrayDescr_Proxy*>(
      py::detail::array_proxy(a.ptr())->descr);
}

// Has the object one of the array protocols (torch.Tensor, jax.Array, cupy, ...)?
bool array_like(py::handle obj) {
  for (const char* name : {"__array__", "__array_interface__", "__dlpack__"}) {
    if (PyObject_HasAttrString(obj.ptr(), name)) return true;
  }
  return false;
}

// How to spell the dtype in a fix the message suggests.
std::string dtype_expression(Storage storage) {
  switch (storage) {
    case Storage::kFloat32:
      return "np.float32";
    case Storage::kFloat64:
      return "np.float64";
    case Storage::kFloat16:
      return "np.float16";
    default:
      return "ml_dtypes.bfloat16";
  }
}

}  // namespace

Storage storage_of(const py::array& a) {
  // NumPy's stable type numbers: NPY_FLOAT, NPY_DOUBLE, NPY_HALF.
  constexpr int kNpyFloat = 11;
  constexpr int kNpyDouble = 12;
  constexpr int kNpyHalf = 23;
  const auto* descr = descr_of(a);
  switch (descr->type_num) {
    case kNpyFloat:
      return Storage::kFloat32;
    case kNpyDouble:
      return Storage::kFloat64;
    case kNpyHalf:
      return Storage::kFloat16;
    default:
      break;
  }
  if (descr->typeobj != nullptr && descr->typeobj == bfloat16_type()) return Storage::kBfloat16;
  return Storage::kUnsupported;
}

py::array checked_array(py::handle obj, const Origin& origin, const Namer& namer,
                        const py::array* param) {
  const auto name_of = [&] { return namer(origin.role, origin.index); };
  const auto param_name_of = [&] { return namer(Role::kParam, origin.index); };
  if (!py::isinstance<py::array>(obj)) {
    std::string message = name_of() + " must be a numpy.ndarray" +
                          (origin.role == Role::kGrad ? " (or an rmsprop.RowGrad of rows)" : "") +
                          ", got " + describe_type(obj);
    if (array_like(obj)) {
      // Only on this error path: the attribute lookups may run the object's Python code.
      message += origin.role == Role::kGrad
                     ? "; convert it with np.asarray(" + name_of() + ")"
                     : "; rmsprop updates arrays in place, so pass a writeable NumPy copy "
                       "(np.array(x)) and keep that array as the parameter";
      message += " (for torch tensors use rmsprop.torch.RMSprop, which updates them in place)";
    }
    throw py::type_error(message);
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  const auto& api = py::detail::npy_api::get();
  const int flags = py::detail::array_proxy(a.ptr())->flags;
  const Storage storage = storage_of(a);
  if (storage == Storage::kUnsupported) {
    throw py::type_error(name_of() + " has dtype " + dtype_name(a) +
                         "; rmsprop supports float32, float64, float16 and "
                         "ml_dtypes.bfloat16 arrays");
  }
  if (descr_of(a)->byteorder == '>') {
    throw py::value_error(name_of() + " is not in native byte order; convert it with "
                                      "arr.astype(arr.dtype.newbyteorder('='))");
  }
  if (param != nullptr) {
    const Storage param_storage = storage_of(*param);
    // State of a 16-bit param is float32; everything else matches the param.
    const bool is_state = origin.role != Role::kGrad;
    const Storage expected =
        is_state && sixteen_bit(param_storage) ? Storage::kFloat32 : param_storage;
    if (storage != expected) {
      if (expected == param_storage) {
        std::string message = name_of() + " has dtype " + dtype_name(a) + " but " +
                              param_name_of() + " has dtype " + dtype_name(*param) +
                              "; they must match";
        if (origin.role == Role::kGrad) {
          message += ": pass " + name_of() + ".astype(" + dtype_expression(param_storage) + ")";
        }
        throw py::type_error(message);
      }
      throw py::type_error(name_of() + " has dtype " + dtype_name(a) + "; the state of a " +
                           dtype_name(*param) + " param is float32");
    }
  }
  if (param != nullptr && !same_shape(a, *param)) {
    throw py::value_error(name_of() + " has shape " + shape_of(a) + " but " + param_name_of() +
                          " has shape " + shape_of(*param) + "; they must match");
  }
  const bool written = origin.role != Role::kGrad;
  if (!(flags & api.NPY_ARRAY_C_CONTIGUOUS_)) {
    throw py::value_error(name_of() + " is not C-contiguous; rmsprop updates arrays in place and "
                                 "never copies. Pass a contiguous array (np.ascontiguousarray) "
                                 "and keep that array as the parameter");
  }
  if (!(flags & api.NPY_ARRAY_ALIGNED_)) {
    throw py::value_error(name_of() + " is not aligned to its element size; allocate it with NumPy "
                                 "(np.empty/np.zeros) or copy it once before training");
  }
  if (written && !(flags & api.NPY_ARRAY_WRITEABLE_)) {
    // Not "set flags.writeable": that fails for arrays from JAX and for read-only memmaps.
    throw py::value_error(name_of() + " is read-only; rmsprop updates it in place: pass a "
                          "writeable copy (np.array(x)) and keep that array as the " +
                          (origin.role == Role::kParam ? std::string("parameter")
                                                       : std::string(state_key(origin.role))));
  }
  return a;
}

}  // namespace bindings
}  // namespace rmsprop
