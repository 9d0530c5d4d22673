"""Small real training tasks that compare optimizer-state storages (SPEC §8): a least-squares
regression whose optimum is known, and scikit-learn's digits with a one-hidden-layer MLP.

Pure NumPy (scikit-learn only for the digits data). Used by tests/test_state_quality.py and by
bench/bench_state_dtype.py's quality table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rmsprop import RMSprop


def regression(
    state_dtype: str, momentum: float = 0.0, seed: int = 0, epochs: int = 30
) -> dict[str, float]:
    """Multi-output least squares Y = X W* + noise, W of 64 x 128 (8192 weights, 8-bit
    eligible), minibatches of 64, RMSProp at alpha = 0.99. Returns the excess loss over the
    exact least-squares optimum, relative to the loss at W = 0."""
    rng = np.random.default_rng(seed)
    n, d, k = 4096, 64, 128
    scales = np.exp(rng.uniform(-2, 2, d)).astype(np.float32)  # ill-conditioned features
    x = (rng.standard_normal((n, d)) * scales).astype(np.float32)
    w_true = rng.standard_normal((d, k)).astype(np.float32)
    y = (x @ w_true + 0.1 * rng.standard_normal((n, k))).astype(np.float32)
    w_opt = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)[0]

    def loss(w: np.ndarray) -> float:
        return float(np.mean((x.astype(np.float64) @ w - y) ** 2))

    w = np.zeros((d, k), np.float32)
    lr = 3e-3 if momentum == 0.0 else 3e-4
    opt = RMSprop([w], lr=lr, alpha=0.99, momentum=momentum, state_dtype=state_dtype)
    order = np.random.default_rng(seed + 1)
    for _epoch in range(epochs):
        perm = order.permutation(n)
        for start in range(0, n, 64):
            idx = perm[start : start + 64]
            grad = (2.0 / len(idx)) * x[idx].T @ (x[idx] @ w - y[idx])
            opt.step([grad.astype(np.float32)])
    best, zero = loss(w_opt), loss(np.zeros((d, k)))
    return {"excess_loss": (loss(w) - best) / (zero - best)}


def digits_mlp(
    state_dtype: str, momentum: float = 0.0, seed: int = 0, epochs: int = 25
) -> dict[str, float]:
    """64 -> 512 (ReLU) -> 10 softmax on scikit-learn's digits (1437 train / 360 test),
    minibatches of 32. Both weight matrices have >= 4096 elements. Returns the final
    training loss (cross-entropy over the training set) and the test accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.2, random_state=0, stratify=data.target
    )
    rng = np.random.default_rng(seed)
    params: list[Any] = [
        (rng.standard_normal((64, 512)) * np.sqrt(2 / 64)).astype(np.float32),
        np.zeros(512, np.float32),
        (rng.standard_normal((512, 10)) * np.sqrt(1 / 512)).astype(np.float32),
        np.zeros(10, np.float32),
    ]
    lr = 1e-3 if momentum == 0.0 else 1e-4
    opt = RMSprop(params, lr=lr, alpha=0.99, momentum=momentum, state_dtype=state_dtype)

    def forward(xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.maximum(xb @ params[0] + params[1], 0)
        logits = h @ params[2] + params[3]
        logits = logits - logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        return h, prob / prob.sum(axis=1, keepdims=True)

    order = np.random.default_rng(seed + 1)
    for _epoch in range(epochs):
        perm = order.permutation(len(x_train))
        for start in range(0, len(perm), 32):
            idx = perm[start : start + 32]
            xb, yb = x_train[idx], y_train[idx]
            h, prob = forward(xb)
            d_logits = prob
            d_logits[np.arange(len(idx)), yb] -= 1
            d_logits /= len(idx)
            d_h = (d_logits @ params[2].T) * (h > 0)
            grads = [xb.T @ d_h, d_h.sum(0), h.T @ d_logits, d_logits.sum(0)]
            opt.step([g.astype(np.float32) for g in grads])
    _, prob = forward(x_train)
    train_loss = float(-np.mean(np.log(prob[np.arange(len(y_train)), y_train] + 1e-12)))
    _, prob_test = forward(x_test)
    accuracy = float(np.mean(prob_test.argmax(axis=1) == y_test))
    return {"train_loss": train_loss, "test_accuracy": accuracy}
