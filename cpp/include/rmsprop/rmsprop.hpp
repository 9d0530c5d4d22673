// Public C++ API of the rmsprop core: hyper-parameters, tensor spans, step(), ISA and thread control.
// Usable from any C++ host. Must not contain intrinsics, OpenMP or Python.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rmsprop {

// One set of hyper-parameters, the names and meaning of SPEC §2. Defaults are torch's.
struct Options {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  bool maximize = false;
  bool eps_in_sqrt = false;             // sqrt(s + eps) instead of sqrt(s) + eps
  bool lr_in_momentum = false;          // m <- mu*m + lr*u; p <- p - m
  bool nesterov = false;                // applied step u + mu*m_new (needs momentum > 0)
  bool decoupled_weight_decay = false;  // p <- p - lr*wd*p instead of g <- g + wd*p
  bool bias_correction = false;         // divide v and grad_avg by (1 - alpha^t)
  double grad_scale = 1.0;              // gradients are divided by it (AMP loss scale)
  bool stochastic_rounding = false;     // bfloat16 params: round stochastically, not to nearest
  std::uint64_t rounding_seed = 0;      // with the tensor's rounding_stream and step, the noise
};

// 16-bit parameter storage: the raw IEEE binary16 / bfloat16 bits. Math runs in float32.
struct float16 {
  std::uint16_t bits;
};
struct bfloat16 {
  std::uint16_t bits;
};

// Throws std::invalid_argument naming the offending field when a value is non-finite or out of
// range, so every host gets the same refusals as the Python API.
void validate(const Options& options);

// Float32 and 16-bit params are updated with coefficients rounded once to float: a value
// beyond float's range would become inf (or grad_scale 0) and turn every element into inf or
// NaN. The first value of `options` that does not fit (name, value, and whether it is too
// small rather than too large), for hosts to refuse before anything is written.
struct Float32RangeProblem {
  const char* name;
  double value;
  bool rounds_to_zero;
};
std::optional<Float32RangeProblem> float32_range_problem(const Options& options);

// How a tensor's optimizer state is stored (SPEC §8). Math always runs in float32 registers.
// kFloat: the compute type (float32, or float64 for double params).
// kBfloat16: square_avg, grad_avg and momentum_buffer as bfloat16, rounded stochastically.
// kEightBit: square_avg as one 8-bit code per element plus a float32 scale per block of
//   kEightBitBlock elements (the block's largest new v); grad_avg and momentum_buffer as
//   bfloat16. Not with centered=True. Only float, float16 and bfloat16 params take the compact
//   kinds. Which tensors get 8-bit state (kEightBitMinElements) is the front-end's choice.
enum class StateDtype : int { kFloat = 0, kBfloat16 = 1, kEightBit = 2 };

constexpr std::size_t kEightBitBlock = 256;
constexpr std::size_t kEightBitMinElements = 4096;  // smaller tensors keep float state

// State buffers of a tensor whose state_dtype is not kFloat (the float pointers of its
// TensorSpan are then unused). With kEightBit, square_avg_codes[i] holds element i and
// square_avg_scales[b] the block of elements [256 b, 256 b + 256) counted from the span's
// first element, whose index_offset must be a multiple of kEightBitBlock.
struct CompactState {
  bfloat16* square_avg = nullptr;            // kBfloat16
  std::uint8_t* square_avg_codes = nullptr;  // kEightBit
  float* square_avg_scales = nullptr;        // kEightBit: ceil(size / 256) entries
  bfloat16* grad_avg = nullptr;              // when centered
  bfloat16* momentum_buffer = nullptr;       // when momentum > 0
};

// One parameter tensor and its state, all of `size` contiguous elements. P is the storage type
// of param and grad; S (float for 16-bit params, else P) that of the state.
// grad_avg is required when centered, momentum_buffer when momentum > 0; both ignored otherwise.
// master_param, optional and only for 16-bit params, is a float32 copy the step reads and
// writes instead of param, storing the rounded result into param.
// `step` is the step number t being taken (1 on the first step); it matters for
// bias_correction and stochastic rounding. Buffers must not overlap (no aliasing assumed).
// grad_addends (float and double params only; any state_dtype): further gradients of `size`
// elements each, read-only, that the step adds to grad as it loads it, in the state precision
// and in order: g = ((grad + grad_addends[0]) + grad_addends[1]) + ..., a NaN on the left
// winning when both operands are NaN (NumPy's np.add gives the same bits). A data-parallel host
// passes every rank's gradient this way instead of summing them in a pass of its own.
template <class P, class S = P>
struct TensorSpan {
  P* param = nullptr;
  const P* grad = nullptr;
  const P* const* grad_addends = nullptr;
  std::size_t grad_addend_count = 0;
  S* square_avg = nullptr;
  S* grad_avg = nullptr;
  S* momentum_buffer = nullptr;
  S* master_param = nullptr;
  std::size_t size = 0;
  std::int64_t step = 1;
  std::uint64_t rounding_stream = 0;  // distinguishes tensors' stochastic-rounding noise
  // Index of element 0 of this span within its whole tensor. Stochastic-rounding noise is keyed
  // on the whole-tensor index, so a tensor stepped in pieces (a shard, a set of rows) gets the
  // same bits as when stepped whole.
  std::uint64_t index_offset = 0;
  StateDtype state_dtype = StateDtype::kFloat;
  CompactState compact;  // used when state_dtype is not kFloat
};

// One fused RMSProp step over every tensor of the list: each element of param, grad and state is
// read once and written once. Runs on the active ISA and up to num_threads() threads; results
// are bit-identical whatever the ISA or thread count. Calls validate(options) first; throws
// std::invalid_argument when a required state buffer is missing.
void step(const Options& options, const TensorSpan<float>* tensors, std::size_t count);
void step(const Options& options, const TensorSpan<double>* tensors, std::size_t count);
void step(const Options& options, const TensorSpan<float16, float>* tensors, std::size_t count);
void step(const Options& options, const TensorSpan<bfloat16, float>* tensors, std::size_t count);

// True when every gradient element of the list is finite (a read-only pass; for the AMP
// pattern "skip the step if any gradient overflowed"). Throws std::invalid_argument for a span
// with grad_addends: the finiteness of a sum is not that of its terms.
bool grads_finite(const TensorSpan<float>* tensors, std::size_t count);
bool grads_finite(const TensorSpan<double>* tensors, std::size_t count);
bool grads_finite(const TensorSpan<float16, float>* tensors, std::size_t count);
bool grads_finite(const TensorSpan<bfloat16, float>* tensors, std::size_t count);

// Instruction-set levels the kernel is compiled for. kAvx2 is x86-64-v3, kAvx512 x86-64-v4.
enum class Isa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

std::string isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // std::invalid_argument for an unknown name
std::vector<Isa> compiled_isas();            // what this build contains
std::vector<Isa> supported_isas();           // compiled, usable here, and not above the cap
Isa active_isa();
// Pins the ISA used by later steps; std::invalid_argument if not in supported_isas().
void set_isa(Isa isa);
// Removes every ISA above `cap` from supported_isas() and makes the best remaining one active
// (the Python package applies RMSPROP_ISA this way at import).
void limit_isa(Isa cap);

bool openmp_enabled();
// Threads a step may use. Defaults to OMP_NUM_THREADS or the core count; 1 without OpenMP.
int num_threads();
void set_num_threads(int threads);  // std::invalid_argument if threads < 1

// Elements below which a step stays on one thread: waking a second thread costs more than the
// work saves (measured: two threads lose on 4K elements).
std::size_t parallel_grain();

// A memory-traffic twin of the plain step (read p, g, v; write p, v; trivial arithmetic) on the
// same chunking and threads, used by the benchmark as the bandwidth roofline.
void roofline_pass(float* p, const float* g, float* v, std::size_t size);

}  // namespace rmsprop
