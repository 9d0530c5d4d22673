"""Float64 reference of the compact optimizer state of SPEC §8 (bfloat16 and 8-bit square_avg).

Independent of the package: no import of rmsprop. The stochastic rounding is written as the
real-number rule "round |x| up with probability equal to its distance from the lower grid point,
in units of the grid spacing, using the given noise", not as the kernel's integer trick, and the
noise is recomputed from the hash the contract names (seed, tensor, step, global element index).
"""

from __future__ import annotations

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
STATE_SALT = 0x73746174655F7631  # square_avg and momentum_buffer share a key, not bits
GRAD_AVG_SALT = 0x73746174655F6731
CODE_SALT = 0x73746174655F6331  # 8-bit square_avg codes
PARAM_SALT = 0x706172616D5F7631  # bfloat16 params
BLOCK = 256
CODE_BIAS = 761  # code c stands for the float32 with bits (c + 761) << 20


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 arrays (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _gf_times_x(b: np.ndarray) -> np.ndarray:
    """Multiplication by x in AES's GF(2^8) (uint8 arrays)."""
    b = np.asarray(b, dtype=np.uint8)
    return ((b << np.uint8(1)) ^ np.where(b & np.uint8(0x80), np.uint8(0x1B), np.uint8(0))).astype(
        np.uint8
    )


def _sbox() -> np.ndarray:
    """FIPS-197's S-box from its definition: inverse in GF(2^8), then the affine map."""

    def multiply(a: int, b: int) -> int:
        product = 0
        for _ in range(8):
            if b & 1:
                product ^= a
            a = ((a << 1) ^ (0x1B if a & 0x80 else 0)) & 0xFF
            b >>= 1
        return product

    def rotl(b: int, k: int) -> int:
        return ((b << k) | (b >> (8 - k))) & 0xFF

    box = np.zeros(256, dtype=np.uint8)
    for x in range(256):
        inverse = next((y for y in range(1, 256) if multiply(x, y) == 1), 0)
        box[x] = (
            inverse
            ^ rotl(inverse, 1)
            ^ rotl(inverse, 2)
            ^ rotl(inverse, 3)
            ^ rotl(inverse, 4)
            ^ 0x63
        )
    return box


SBOX = _sbox()
# Byte r + 4c of a 128-bit block is row r, column c of AES's state; ShiftRows moves row r left
# by r columns.
_SHIFT_ROWS = np.array([r + 4 * ((c + r) % 4) for c in range(4) for r in range(4)])


def aes_round(blocks: np.ndarray, round_key: np.ndarray) -> np.ndarray:
    """x86's AESENC on (n, 16) uint8 blocks: ShiftRows, SubBytes, MixColumns, then the key."""
    t = SBOX[blocks[:, _SHIFT_ROWS]].reshape(-1, 4, 4)  # (block, column, row)
    b0, b1, b2, b3 = (t[:, :, r] for r in range(4))
    out = np.empty_like(t)
    two = _gf_times_x
    out[:, :, 0] = two(b0) ^ two(b1) ^ b1 ^ b2 ^ b3
    out[:, :, 1] = b0 ^ two(b1) ^ two(b2) ^ b2 ^ b3
    out[:, :, 2] = b0 ^ b1 ^ two(b2) ^ two(b3) ^ b3
    out[:, :, 3] = two(b0) ^ b0 ^ b1 ^ b2 ^ two(b3)
    return out.reshape(-1, 16) ^ round_key


def _le_bytes(words: list[int]) -> np.ndarray:
    return np.frombuffer(b"".join(int(w).to_bytes(8, "little") for w in words), dtype=np.uint8)


NOISE_ROUNDS = 4


def noise_words(key: int, first: int, size: int) -> np.ndarray:
    """The 32-bit words of elements first..first+size-1 under a buffer's 64-bit key: element e
    takes lane e mod 4 of NOISE_ROUNDS AES rounds on the block (e // 4 + key, mix64(key +
    GOLDEN)), round j's key (mix64((2j + 1) GOLDEN), mix64((2j + 2) GOLDEN))."""

    def mixed(x: int) -> int:
        return int(mix64(np.uint64(x % 2**64)))

    w = [key, mixed(key + GOLDEN)]
    w += [mixed(m * GOLDEN) for m in range(1, 1 + 2 * NOISE_ROUNDS)]
    first_quad, last_quad = first // 4, (first + size - 1) // 4
    quads = np.arange(first_quad, last_quad + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        low = quads + np.uint64(w[0])
    blocks = np.empty((len(quads), 16), dtype=np.uint8)
    blocks[:, :8] = low.astype("<u8").view(np.uint8).reshape(-1, 8)
    blocks[:, 8:] = _le_bytes([w[1]])
    for j in range(NOISE_ROUNDS):
        blocks = aes_round(blocks, _le_bytes(w[2 + 2 * j : 4 + 2 * j]))
    words = np.ascontiguousarray(blocks).view("<u4").reshape(-1)
    start = first - 4 * first_quad
    return words[start : start + size].astype(np.uint32)


def _buffer_key(seed: int, stream: int, step: int, salt: int) -> int:
    """A buffer's 64-bit noise key: mix64 of the rounding key (seed, tensor, step) and a salt."""
    key = mix64(np.uint64(seed))
    key = mix64(key ^ np.uint64(stream))
    key = mix64(key ^ np.uint64(step))
    return int(mix64(key ^ np.uint64(salt)))


def state_noise(
    seed: int, stream: int, step: int, size: int, buffer: str, first: int = 0
) -> np.ndarray:
    """Uniform numbers in [0, 1) (multiples of 2^-16) rounding bfloat16 ``buffer`` of elements
    first..first+size-1 of tensor ``stream`` at ``step``: the element's 32-bit word under the
    buffer's key (mix64 of the rounding key and a salt), low 16 bits for square_avg and
    grad_avg, high 16 for momentum_buffer."""
    salt = GRAD_AVG_SALT if buffer == "grad_avg" else STATE_SALT
    h = noise_words(_buffer_key(seed, stream, step, salt), first, size)
    words = h >> np.uint32(16) if buffer == "momentum_buffer" else h & np.uint32(0xFFFF)
    return words.astype(np.float64) / 2.0**16


def code_noise(seed: int, stream: int, step: int, size: int, first: int = 0) -> np.ndarray:
    """The noise of 8-bit square_avg codes (as state_noise), under its own salt, two elements
    per word: element e takes 16-bit half (e // 16) % 2 (low, then high) of word
    (e // 32) * 16 + e % 16."""
    e = np.arange(first, first + size, dtype=np.int64)
    first_word = (first // 32) * 16
    last_word = ((first + size - 1) // 32) * 16 + 15
    h = noise_words(
        _buffer_key(seed, stream, step, CODE_SALT), first_word, last_word + 1 - first_word
    )
    word = h[(e // 32) * 16 + e % 16 - first_word]
    half = ((e // 16) % 2).astype(np.uint32) * np.uint32(16)
    return ((word >> half) & np.uint32(0xFFFF)).astype(np.float64) / 2.0**16


def param_noise(seed: int, stream: int, step: int, size: int, first: int = 0) -> np.ndarray:
    """The noise rounding bfloat16 params stochastically (as state_noise): the low 16 bits of
    each element's word under the params' own salt."""
    h = noise_words(_buffer_key(seed, stream, step, PARAM_SALT), first, size)
    return (h & np.uint32(0xFFFF)).astype(np.float64) / 2.0**16


def _round_on_grid(x: np.ndarray, mantissa_bits: int, u: np.ndarray) -> np.ndarray:
    """Stochastic rounding of |x| to floats with ``mantissa_bits`` stored bits (binary64 math)."""
    mag = np.abs(x)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.where(mag > 0, mag, 1.0)))
    exponent = np.maximum(exponent, -126.0)  # float32 subnormals share the smallest binade's grid
    spacing = 2.0 ** (exponent - mantissa_bits)
    low = np.floor(mag / spacing) * spacing
    frac = (mag - low) / spacing
    up = frac + u >= 1.0
    return np.sign(x) * np.where(up, low + spacing, low)


def bfloat16_stochastic(x32: np.ndarray, u16: np.ndarray) -> np.ndarray:
    """float32 values stored as bfloat16 with stochastic rounding (finite inputs)."""
    return _round_on_grid(np.asarray(x32, dtype=np.float64), 7, u16)


def quantize_block(v32: np.ndarray, u20: np.ndarray) -> tuple[float, np.ndarray]:
    """Scale and codes of one block of new v (float32, >= 0, finite).

    scale = max(v); r = v * (1 / scale), each operation rounded once to float32 (a float64
    result rounded to float32 is the correctly rounded float32 operation; v / scale for a
    subnormal scale); r (at most an ulp above 1) rounded stochastically to 3 mantissa bits
    with the uniform ``u`` (rounds up when its distance from the lower grid point, in grid
    steps, plus u reaches 1); the
    code of the result q = 2^e (1 + m/8) is (e + 127) * 8 + m - 761, clamped to [0, 255].
    """
    v = np.asarray(v32, dtype=np.float64)
    scale = float(v.max())
    if scale == 0.0:
        return 0.0, np.zeros(v.shape, dtype=np.uint8)
    if scale >= float(np.finfo(np.float32).tiny):
        # v times the float32 reciprocal of the scale, each rounded once to float32.
        inverse = np.float64(np.float32(1.0 / scale))
        r = (v * inverse).astype(np.float32).astype(np.float64)
    else:  # a subnormal scale: its reciprocal would overflow, so v / scale
        r = (v / scale).astype(np.float32).astype(np.float64)
    q = _round_on_grid(r, 3, u20)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(q > 0, q, 2.0**-140)))
    m = np.round((q / 2.0**e - 1.0) * 8.0)
    code = (e + 127) * 8 + m - CODE_BIAS
    return scale, np.clip(code, 0, 255).astype(np.uint8)


def decode(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """v of 8-bit codes in float64: 2^e (1 + m/8) * scale of the block, e and m from the code."""
    c = np.asarray(codes, dtype=np.int64).reshape(-1) + CODE_BIAS
    r = 2.0 ** ((c >> 3) - 127) * (1.0 + (c & 7) / 8.0)
    per_element = np.repeat(np.asarray(scales, dtype=np.float64), BLOCK)[: c.size]
    return (r * per_element).reshape(np.shape(codes))


def quantize(v32: np.ndarray, u20: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scales and codes of a whole tensor's new v, block by block from its start."""
    flat = np.asarray(v32).reshape(-1)
    scales, codes = [], []
    for start in range(0, flat.size, BLOCK):
        scale, c = quantize_block(flat[start : start + BLOCK], u20[start : start + BLOCK])
        scales.append(scale)
        codes.append(c)
    return np.array(scales, dtype=np.float32), np.concatenate(codes).reshape(np.shape(v32))
