"""The classic RMSProp example: a 10 -> 50 -> 1 ReLU network fitted with MSE, in pure NumPy.

Forward and backward passes are written by hand; rmsprop updates the weight arrays in place.
Run: python examples/simple_net.py
"""

from __future__ import annotations

import numpy as np

from rmsprop import RMSprop


class SimpleNet:
    """fc1 (10 -> 50), ReLU, fc2 (50 -> 1); weights laid out as torch's nn.Linear."""

    def __init__(self, rng: np.random.Generator) -> None:
        # torch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        def uniform(fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
            bound = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-bound, bound, shape).astype(np.float32)

        self.w1 = uniform(10, (50, 10))
        self.b1 = uniform(10, (50,))
        self.w2 = uniform(50, (1, 50))
        self.b2 = uniform(50, (1,))

    @property
    def params(self) -> list[np.ndarray]:
        return [self.w1, self.b1, self.w2, self.b2]

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        hidden_pre = x @ self.w1.T + self.b1
        hidden = np.maximum(hidden_pre, 0.0)
        out = hidden @ self.w2.T + self.b2
        diff = out - y
        loss = float(np.mean(diff**2))
        d_out = (2.0 / diff.size) * diff
        d_w2 = d_out.T @ hidden
        d_b2 = d_out.sum(axis=0)
        d_hidden = (d_out @ self.w2) * (hidden_pre > 0)
        d_w1 = d_hidden.T @ x
        d_b1 = d_hidden.sum(axis=0)
        grads = [d_w1, d_b1, d_w2, d_b2]
        return loss, [g.astype(np.float32) for g in grads]


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 10)).astype(np.float32)
    y = rng.standard_normal((100, 1)).astype(np.float32)
    net = SimpleNet(rng)
    optimizer = RMSprop(net.params, lr=0.01, alpha=0.9, eps=1e-8)
    epochs = 10
    for epoch in range(1, epochs + 1):
        loss, grads = net.loss_and_grads(x, y)
        optimizer.step(grads)
        print(f"Epoch [{epoch}/{epochs}], Loss: {loss:.4f}")


if __name__ == "__main__":
    main()
