/* C API of the rmsprop core (C99): options, tensor descriptors, one step function per dtype,
 * version, ISA and thread control. Stable ABI for C, Rust, Go, Julia and ctypes hosts; must not
 * contain C++, exceptions, or types whose size depends on the platform's int or long.
 *
 * Every function that can fail returns an rmsprop_status and writes a NUL-terminated message
 * into the caller's buffer (message, message_size); the message is truncated to fit, and
 * message may be NULL when message_size is 0. There is no hidden "last error" state, so calls
 * from any thread, goroutine or task are independent. When a step is refused, nothing has been
 * written: every check runs before the first element is updated.
 *
 * Example:
 *     rmsprop_options o;
 *     rmsprop_options_init(&o, sizeof o);     // torch's defaults
 *     o.lr = 0.01; o.alpha = 0.9;
 *     rmsprop_tensor_f32 t = {param, grad, square_avg, NULL, NULL, n, 1};
 *     char msg[256];
 *     if (rmsprop_step_f32(&o, &t, 1, msg, sizeof msg) != RMSPROP_OK) fprintf(stderr, "%s\n", msg);
 */
#ifndef RMSPROP_RMSPROP_H
#define RMSPROP_RMSPROP_H

#include <stdint.h>

#if defined(_WIN32) && defined(RMSPROP_BUILDING_LIBRARY)
#define RMSPROP_API __declspec(dllexport)
#elif defined(_WIN32)
#define RMSPROP_API __declspec(dllimport)
#elif defined(__GNUC__)
#define RMSPROP_API __attribute__((visibility("default")))
#else
#define RMSPROP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes (int32_t). Values are fixed: new codes may be added, none will change. */
typedef int32_t rmsprop_status;
#define RMSPROP_OK 0
#define RMSPROP_ERROR_INVALID_ARGUMENT 1 /* a hyper-parameter, step count, size or name */
#define RMSPROP_ERROR_NULL_POINTER 2     /* a required pointer is NULL */
#define RMSPROP_ERROR_OVERLAP 3          /* two buffers share memory */
#define RMSPROP_ERROR_UNSUPPORTED 4      /* ISA not available here; unknown option fields set */
#define RMSPROP_ERROR_OUT_OF_MEMORY 5
#define RMSPROP_ERROR_INTERNAL 6

/* Hyper-parameters, SPEC section 2. Booleans are int32_t 0 or 1 (other values are refused).
 * struct_size comes first and must be the size of the struct the caller compiled against
 * (rmsprop_options_init sets it): fields a smaller, older struct lacks take their defaults; a
 * larger, newer struct is accepted when the fields this library does not know are all zero.
 * New fields are only ever appended. */
typedef struct rmsprop_options {
  uint64_t struct_size;
  double lr;           /* 1e-2 */
  double alpha;        /* 0.99, in [0, 1] */
  double eps;          /* 1e-8 */
  double weight_decay; /* 0 */
  double momentum;     /* 0 */
  int32_t centered;
  int32_t maximize;
  int32_t eps_in_sqrt;            /* sqrt(v + eps) instead of sqrt(v) + eps */
  int32_t lr_in_momentum;         /* m <- mu*m + lr*u; p <- p - m */
  int32_t nesterov;               /* needs momentum > 0 */
  int32_t decoupled_weight_decay; /* p <- p - lr*wd*p instead of g <- g + wd*p */
  int32_t bias_correction;        /* divide v and grad_avg by 1 - alpha^t; needs alpha < 1 */
  int32_t stochastic_rounding;    /* bfloat16 params: round stochastically, not to nearest */
  double grad_scale;              /* 1; gradients are divided by it (loss scaling) */
  uint64_t rounding_seed;         /* 0; with rounding_stream and step, the rounding noise */
} rmsprop_options;

/* One parameter tensor and its state, each `size` contiguous elements, all separate buffers.
 * square_avg is required; grad_avg only when centered (else ignored), momentum_buffer only
 * when momentum > 0 (else ignored). State starts at zero (square_avg may start at another
 * value, e.g. 1.0 as TF1 does). `step` is the step being taken: 1 on the first. */
typedef struct rmsprop_tensor_f32 {
  float* param;
  const float* grad;
  float* square_avg;
  float* grad_avg;
  float* momentum_buffer;
  uint64_t size;
  int64_t step;
} rmsprop_tensor_f32;

typedef struct rmsprop_tensor_f64 {
  double* param;
  const double* grad;
  double* square_avg;
  double* grad_avg;
  double* momentum_buffer;
  uint64_t size;
  int64_t step;
} rmsprop_tensor_f64;

/* 16-bit params and grads as their raw bits (IEEE binary16 or bfloat16); state is float32.
 * master_param (optional, may be NULL) is a float32 copy the step reads and writes instead of
 * param, storing the rounded result in param. rounding_stream tells tensors' stochastic
 * rounding noise apart (the Python optimizer uses the param's index). */
typedef struct rmsprop_tensor_16 {
  uint16_t* param;
  const uint16_t* grad;
  float* square_avg;
  float* grad_avg;
  float* momentum_buffer;
  float* master_param;
  uint64_t size;
  int64_t step;
  uint64_t rounding_stream;
} rmsprop_tensor_16;

/* Fills the first struct_size bytes of *options with torch's defaults and sets struct_size.
 * Pass sizeof(rmsprop_options) as you compiled it. */
RMSPROP_API rmsprop_status rmsprop_options_init(rmsprop_options* options, uint64_t struct_size);

/* One fused step over `count` tensors (one pass over memory, bit-identical on every ISA and
 * thread count). Refuses, before writing anything: NULL pointers, invalid or non-finite
 * hyper-parameters (for float32 and 16-bit params also values beyond float32's range), a
 * missing state buffer, step < 1, misaligned or overlapping buffers. */
RMSPROP_API rmsprop_status rmsprop_step_f32(const rmsprop_options* options,
                                            const rmsprop_tensor_f32* tensors, uint64_t count,
                                            char* message, uint64_t message_size);
RMSPROP_API rmsprop_status rmsprop_step_f64(const rmsprop_options* options,
                                            const rmsprop_tensor_f64* tensors, uint64_t count,
                                            char* message, uint64_t message_size);
RMSPROP_API rmsprop_status rmsprop_step_f16(const rmsprop_options* options,
                                            const rmsprop_tensor_16* tensors, uint64_t count,
                                            char* message, uint64_t message_size);
RMSPROP_API rmsprop_status rmsprop_step_bf16(const rmsprop_options* options,
                                             const rmsprop_tensor_16* tensors, uint64_t count,
                                             char* message, uint64_t message_size);

/* The library's version, e.g. "0.1.0" (a static string). */
RMSPROP_API const char* rmsprop_version(void);

/* ISAs: "baseline", "avx2" (x86-64-v3), "avx512" (x86-64-v4). Names are static strings. */
RMSPROP_API const char* rmsprop_active_isa(void);
/* 1 if this build and CPU can run `name`, else 0. */
RMSPROP_API int32_t rmsprop_isa_supported(const char* name);
/* Pins the ISA later steps use; RMSPROP_ERROR_UNSUPPORTED if this build or CPU lacks it. */
RMSPROP_API rmsprop_status rmsprop_set_isa(const char* name, char* message, uint64_t message_size);

/* Threads: 1 if built without OpenMP. Small steps stay on one thread whatever the setting. */
RMSPROP_API int32_t rmsprop_openmp_enabled(void);
RMSPROP_API int32_t rmsprop_get_num_threads(void);
RMSPROP_API rmsprop_status rmsprop_set_num_threads(int32_t threads, char* message,
                                                   uint64_t message_size);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* RMSPROP_RMSPROP_H */
