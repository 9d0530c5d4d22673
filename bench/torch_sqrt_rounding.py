"""How often torch's CPU float32 sqrt differs from the correctly rounded square root.

The README's "equal to torch to float32 rounding, not bit for bit" rests on this figure.
The correctly rounded result is the float64 square root rounded once to float32 (exact:
float64 has more than twice float32's precision). Needs torch; not part of the test suite.

Usage:
    python bench/torch_sqrt_rounding.py            # 4M inputs over 1e-30..1e30
    ATEN_CPU_CAPABILITY=avx2 python bench/torch_sqrt_rounding.py
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1 << 22, help="number of random inputs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    # Log-uniform over 60 decades: every binade is represented, like square averages are.
    x = np.exp(rng.uniform(np.log(1e-30), np.log(1e30), args.n)).astype(np.float32)
    exact = np.sqrt(x.astype(np.float64))
    correct = exact.astype(np.float32)
    ulp = np.spacing(correct).astype(np.float64)
    print(f"torch {torch.__version__}, kernels {torch.backends.cpu.get_cpu_capability()}")
    candidates = {
        "torch.sqrt": torch.sqrt(torch.from_numpy(x)).numpy(),
        "numpy.sqrt (reference check)": np.sqrt(x),
    }
    for name, got in candidates.items():
        differ = float(np.mean(got != correct)) * 100
        worst = float(np.max(np.abs(got.astype(np.float64) - exact) / ulp))
        print(f"{name:30s} {differ:6.2f} % not correctly rounded, max error {worst:.3f} ulp")


if __name__ == "__main__":
    main()
