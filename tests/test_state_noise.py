"""The state noise's AES (cpp/src/state_noise.*): every implementation this CPU has (portable
C++, AES-NI, VAES) gives the float64 reference's words, and the reference's round is x86's
AESENC (FIPS-197's known answer)."""

from __future__ import annotations

import numpy as np
import pytest
import reference_lowbit as ref

from rmsprop import _core

IMPLS = ("software", "aes-ni", "vaes512")


def _words(key: int, first_quad: int, quads: int, impl: str) -> np.ndarray:
    words = np.array(_core._noise_words(key, first_quad, quads, impl), dtype=np.uint32)
    if words.size == 0:
        pytest.skip(f"this CPU has no {impl}")
    return words


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("key", "first_quad", "quads"),
    [
        (0, 0, 1),
        (12345, 7, 9),  # VAES: two registers and a one-quad tail
        (2**64 - 1, 2**62 - 3, 6),  # e // 4 + whitening wraps modulo 2^64
        (0x73746174655F7631, 2**30, 65),  # a block straddling 65 quads
    ],
)
def test_every_implementation_gives_the_reference_words(
    impl: str, key: int, first_quad: int, quads: int
) -> None:
    got = _words(key, first_quad, quads, impl)
    assert np.array_equal(got, ref.noise_words(key, 4 * first_quad, 4 * quads))


def test_implementations_agree_on_many_keys() -> None:
    rng = np.random.default_rng(3)
    for key in rng.integers(0, 2**63, size=20, dtype=np.uint64):
        first_quad = int(rng.integers(0, 2**40))
        words = [np.array(_core._noise_words(int(key), first_quad, 37, impl)) for impl in IMPLS]
        words = [w for w in words if w.size]
        assert all(np.array_equal(words[0], w) for w in words[1:])
        assert np.array_equal(words[0], ref.noise_words(int(key), 4 * first_quad, 4 * 37))


def test_reference_round_is_fips_197_aes() -> None:
    """AES-128 of FIPS-197 appendix C.1 built from the reference's round: its key schedule, nine
    AESENC rounds and a last round without MixColumns."""
    key = np.arange(16, dtype=np.uint8)
    plaintext = np.array([0x11 * k for k in range(16)], dtype=np.uint8)
    round_keys = [key]
    rcon = 1
    for _ in range(10):
        previous = round_keys[-1]
        word = ref.SBOX[np.roll(previous[12:], -1)]
        word[0] ^= rcon
        rcon = int(ref._gf_times_x(np.uint8(rcon)))
        new = np.empty(16, dtype=np.uint8)
        for c in range(4):
            word = word ^ previous[4 * c : 4 * c + 4]
            new[4 * c : 4 * c + 4] = word
        round_keys.append(new)
    state = (plaintext ^ round_keys[0])[None, :]
    for r in range(1, 10):
        state = ref.aes_round(state, round_keys[r])
    last = ref.SBOX[state[0, ref._SHIFT_ROWS]] ^ round_keys[10]
    assert last.tobytes().hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


@pytest.mark.parametrize("half", ["low", "high", "codes"])
def test_words_are_uniform_and_uncorrelated(half: str) -> None:
    """16-bit noise of consecutive elements (a word's low half: square_avg, params; its high
    half: momentum_buffer; the codes' two elements per word): mean and lag-1..32 correlation of
    a million values within a few standard errors of independent uniforms."""
    if half == "codes":
        u16 = ref.code_noise(seed=3, stream=0, step=1, size=1 << 20) * 2**16
    else:
        words = ref.noise_words(0xC0FFEE, 0, 1 << 20)
        u16 = words >> np.uint32(16) if half == "high" else words & np.uint32(0xFFFF)
    u = (np.asarray(u16, dtype=np.float64) + 0.5) / 2**16 - 0.5
    se = 1 / np.sqrt(u.size)  # of the correlations below; the mean's is se / sqrt(12)
    assert abs(u.mean()) < 5 * se / np.sqrt(12)
    for lag in range(1, 33):
        corr = np.mean(u[:-lag] * u[lag:]) * 12
        assert abs(corr) < 5 * se, lag
