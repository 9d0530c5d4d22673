"""examples/seed_torch.py: the classic torch script with one changed line trains as torch does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seed_torch.py"
OURS = "rmsprop.torch.RMSprop("
THEIRS = "torch.optim.RMSprop("


def losses(source: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-"], input=source, capture_output=True, text=True, check=True
    ).stdout
    return re.findall(r"^Epoch \[\d+/10\], Loss: ([0-9.]+)$", out, re.M)


def test_seed_script_losses_equal_torch_optim_to_four_decimals() -> None:
    source = EXAMPLE.read_text()
    changed = [line for line in source.splitlines() if OURS in line]
    assert len(changed) == 1 and "lr=0.01, alpha=0.9, eps=1e-8" in changed[0]
    ours = losses(source)
    theirs = losses(source.replace(OURS, THEIRS))
    assert len(ours) == 10
    assert ours == theirs
    assert float(ours[-1]) < 0.8 * float(ours[0])
