// Checks behind the C API (see rmsprop.h): reading a sized options struct, the refusals the
// Python bindings make (float32 range, nulls, alignment, overlaps), and the error type that
// carries a status to the boundary. Must not contain math or anything exported.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "rmsprop/rmsprop.h"
#include "rmsprop/rmsprop.hpp"

namespace rmsprop {
namespace capi {

// Thrown inside the library only; the exported functions turn it into a status and a message.
struct Error : std::runtime_error {
  rmsprop_status status;
  Error(rmsprop_status code, const std::string& message)
      : std::runtime_error(message), status(code) {}
};

// Default values of every field, as rmsprop_options_init writes them.
rmsprop_options default_options();

// The caller's options with defaults for fields its (older) struct lacks, turned into the C++
// Options. Refuses a null pointer, a struct_size that is not even the size field, non-zero
// fields unknown to this library, booleans other than 0/1, and invalid values.
// `float32_math` adds the checks that values fit float32 (float32 and 16-bit params).
Options read_options(const rmsprop_options* options, bool float32_math);

// One buffer of one tensor, for the null, alignment and overlap checks.
struct Buffer {
  const void* data;
  std::size_t element_bytes;
  bool written;
  const char* role;
};

// Checks the buffers of all tensors: required ones non-null, every one aligned to its element
// and its byte size representable, and no written buffer sharing a byte with any other.
// buffers[k * per_tensor + j] is buffer j of tensor k; a null optional buffer has data null and
// role prefixed with '?'. sizes[k] is tensor k's element count.
void check_buffers(const Buffer* buffers, std::size_t per_tensor, const std::uint64_t* sizes,
                   std::size_t count);

// Writes message into (out, out_size) NUL-terminated and truncated to fit.
void write_message(char* out, std::uint64_t out_size, const char* message);

}  // namespace capi
}  // namespace rmsprop
