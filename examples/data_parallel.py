"""The classic 10 -> 50 -> 1 network of simple_net.py, trained data-parallel over MPI ranks.

Each rank computes gradients on its slice of the batch; ShardedRMSprop sums them in rank order,
steps its shard of the params (and keeps only that shard's optimizer state), and gathers the
updated params into every rank's arrays. Rank 0 prints the same losses as the single-process
full-batch run of simple_net.py.

Run: mpiexec -n 2 python -m mpi4py examples/data_parallel.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from rmsprop.distributed import ShardedRMSprop, packed_copies

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simple_net import SimpleNet


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, ranks = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(0)  # the same data and initial weights on every rank
    x = rng.standard_normal((100, 10)).astype(np.float32)
    y = rng.standard_normal((100, 1)).astype(np.float32)
    net = SimpleNet(rng)
    # Optional: params in one buffer, so each rank's updates arrive as one message.
    net.w1, net.b1, net.w2, net.b2 = packed_copies(net.params)
    mine = np.array_split(np.arange(len(x)), ranks)[rank]
    share = np.float32(len(mine) / len(x))  # the full-batch mean is the sum of these shares
    # "sum": each rank's gradient is already weighted by its share of the batch.
    optimizer = ShardedRMSprop(net.params, comm, grad_reduction="sum", lr=0.01, alpha=0.9, eps=1e-8)
    epochs = 10
    for epoch in range(1, epochs + 1):
        loss, grads = net.loss_and_grads(x[mine], y[mine])
        optimizer.step([g * share for g in grads])
        losses = comm.gather(loss * float(share), root=0)
        if rank == 0:
            assert losses is not None
            print(f"Epoch [{epoch}/{epochs}], Loss: {sum(losses):.4f}", flush=True)


if __name__ == "__main__":
    main()
