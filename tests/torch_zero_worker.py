"""One rank of the 2-process ZeroRedundancyOptimizer check (run by test_torch_zero.py).

Trains the same net twice on rank-dependent data: ZeroRedundancyOptimizer over
rmsprop.torch.RMSprop and over torch.optim.RMSprop; their params must agree to rounding, and a
consolidated checkpoint of ours must load back into a new ZeRO and continue bit-identically.
"""

from __future__ import annotations

import copy
import sys

import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer

import rmsprop.torch


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 50), torch.nn.ReLU(), torch.nn.Linear(50, 1))


def train(net: torch.nn.Module, opt: ZeroRedundancyOptimizer, steps: int, rank: int) -> None:
    data = torch.Generator().manual_seed(100 + rank)
    for _ in range(steps):
        x, y = torch.randn(16, 10, generator=data), torch.randn(16, 1, generator=data)
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()


def check(rank: int, bucket_view: bool) -> None:
    options = {"lr": 0.01, "momentum": 0.9, "centered": True}
    ours, theirs = make_net(), make_net()
    opt = ZeroRedundancyOptimizer(
        ours.parameters(),
        optimizer_class=rmsprop.torch.RMSprop,
        parameters_as_bucket_view=bucket_view,
        **options,
    )
    topt = ZeroRedundancyOptimizer(
        theirs.parameters(),
        optimizer_class=torch.optim.RMSprop,
        parameters_as_bucket_view=bucket_view,
        **options,
    )
    ptrs = [p.data_ptr() for p in ours.parameters()]
    train(ours, opt, 5, rank)
    train(theirs, topt, 5, rank)
    assert [p.data_ptr() for p in ours.parameters()] == ptrs
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)

    opt.consolidate_state_dict(to=0)
    # A copy, as torch.save would make: state_dict() holds the live state tensors.
    checkpoint = [copy.deepcopy(opt.state_dict()) if rank == 0 else None]
    dist.broadcast_object_list(checkpoint, src=0)
    twin = make_net()
    twin.load_state_dict(ours.state_dict())
    resumed = ZeroRedundancyOptimizer(
        twin.parameters(),
        optimizer_class=rmsprop.torch.RMSprop,
        parameters_as_bucket_view=bucket_view,
        lr=0.5,
    )
    resumed.load_state_dict(checkpoint[0])
    train(ours, opt, 3, rank)
    train(twin, resumed, 3, rank)
    for p, q in zip(ours.parameters(), twin.parameters()):
        assert torch.equal(p, q), (p - q).abs().max()


def check_compact_state(rank: int, state_dtype: str) -> None:
    """Compact state under ZeRO: its consolidated checkpoint resumes bit-identically."""

    def wide_net() -> torch.nn.Module:  # 100 x 60 = 6000 elements: 8-bit state
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(10, 100), torch.nn.Linear(100, 60))

    def run(net: torch.nn.Module, opt: ZeroRedundancyOptimizer, steps: int) -> None:
        data = torch.Generator().manual_seed(200 + rank)
        for _ in range(steps):
            opt.zero_grad()
            net(torch.randn(8, 10, generator=data)).square().mean().backward()
            opt.step()

    options = {"lr": 0.01, "momentum": 0.9, "state_dtype": state_dtype}
    ours = wide_net()
    opt = ZeroRedundancyOptimizer(
        ours.parameters(), optimizer_class=rmsprop.torch.RMSprop, **options
    )
    run(ours, opt, 4)
    opt.consolidate_state_dict(to=0)
    checkpoint = [copy.deepcopy(opt.state_dict()) if rank == 0 else None]
    dist.broadcast_object_list(checkpoint, src=0)
    # Rank 0 gathered every param's state; under "8bit" only the 6000-element weight is 8-bit.
    kinds = {v.dtype for entry in checkpoint[0]["state"].values() for v in entry.values()}
    assert torch.bfloat16 in kinds and (state_dtype == "bfloat16") != (torch.uint8 in kinds)
    twin = wide_net()
    twin.load_state_dict(ours.state_dict())
    resumed = ZeroRedundancyOptimizer(
        twin.parameters(), optimizer_class=rmsprop.torch.RMSprop, **options
    )
    resumed.load_state_dict(checkpoint[0])
    run(ours, opt, 3)
    run(twin, resumed, 3)
    for p, q in zip(ours.parameters(), twin.parameters()):
        assert torch.equal(p, q), (state_dtype, (p - q).abs().max())


def main() -> None:
    rank, world = int(sys.argv[1]), int(sys.argv[2])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for bucket_view in (False, True):  # True: ZeRO moves every param into a flat bucket
        check(rank, bucket_view)
    for state_dtype in ("bfloat16", "8bit"):
        check_compact_state(rank, state_dtype)
    dist.destroy_process_group()
    print(f"rank {rank} ok")


if __name__ == "__main__":
    main()
