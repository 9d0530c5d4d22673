"""The example trains, and its trajectory is torch's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "simple_net.py"


def test_example_prints_ten_decreasing_epochs() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=True
    ).stdout
    losses = [float(x) for x in re.findall(r"^Epoch \[\d+/10\], Loss: ([0-9.]+)$", out, re.M)]
    assert len(losses) == 10
    assert losses[-1] < 0.8 * losses[0]


def test_example_network_trains_like_torch() -> None:
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from simple_net import SimpleNet
    finally:
        sys.path.pop(0)
    from rmsprop import RMSprop

    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 10)).astype(np.float32)
    y = rng.standard_normal((100, 1)).astype(np.float32)
    ours = SimpleNet(np.random.default_rng(1))
    theirs = SimpleNet(np.random.default_rng(1))
    tensors = [torch.from_numpy(p) for p in theirs.params]  # shares theirs' memory
    topt = torch.optim.RMSprop(tensors, lr=0.01, alpha=0.9, eps=1e-8)
    opt = RMSprop(ours.params, lr=0.01, alpha=0.9, eps=1e-8)
    for _ in range(10):
        loss, grads = ours.loss_and_grads(x, y)
        opt.step(grads)
        tloss, tgrads = theirs.loss_and_grads(x, y)
        for t, g in zip(tensors, tgrads):
            t.grad = torch.from_numpy(g)
        topt.step()
        # Float32 training drifts apart only by rounding; 1e-4 is ~1000 ulps of the loss.
        assert abs(loss - tloss) <= 1e-4 * abs(tloss)
