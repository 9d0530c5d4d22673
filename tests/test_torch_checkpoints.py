"""Checkpoints of rmsprop.torch.RMSprop: torch's layout, both ways with torch.optim.RMSprop,
bit-identical resumption, and refusals that change nothing."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rmsprop.torch")

OPTIONS = [{}, {"momentum": 0.9}, {"centered": True, "weight_decay": 0.01, "momentum": 0.5}]


def make_net(seed: int = 0, dtype: Any = torch.float32) -> Any:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(10, 50), torch.nn.ReLU(), torch.nn.Linear(50, 1))
    return net.to(dtype)


DATA = torch.Generator().manual_seed(2)
X = torch.randn(32, 10, generator=DATA)
Y = torch.randn(32, 1, generator=DATA)


def train(net: Any, opt: Any, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        out = net(X.to(next(net.parameters()).dtype))
        torch.nn.functional.mse_loss(out.float(), Y).backward()
        opt.step()


def saved(opt: Any) -> Any:
    """What torch.save/torch.load of opt.state_dict() gives back."""
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_layout_equals_torch(options: dict[str, Any]) -> None:
    net, tnet = make_net(), make_net()
    opt, topt = (
        rt.RMSprop(net.parameters(), **options),
        torch.optim.RMSprop(tnet.parameters(), **options),
    )
    train(net, opt, 2)
    train(tnet, topt, 2)
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert ours["state"].keys() == theirs["state"].keys()
    for k, entry in theirs["state"].items():
        assert list(ours["state"][k]) == list(entry)
        for key, value in entry.items():
            assert type(ours["state"][k][key]) is type(value)
            assert ours["state"][k][key].dtype == value.dtype
            assert ours["state"][k][key].shape == value.shape
    for group, tgroup in zip(ours["param_groups"], theirs["param_groups"]):
        assert list(group)[: len(tgroup) - 1] == [k for k in tgroup if k != "params"]
        assert all(group[k] == v for k, v in tgroup.items())


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_torch_checkpoint_continues_as_torch(options: dict[str, Any]) -> None:
    tnet = make_net()
    topt = torch.optim.RMSprop(tnet.parameters(), lr=0.01, **options)
    train(tnet, topt, 3)
    checkpoint = saved(topt)
    net = make_net(seed=5)
    net.load_state_dict(tnet.state_dict())
    opt = rt.RMSprop(net.parameters(), lr=0.5)  # replaced by the checkpoint's groups
    opt.load_state_dict(checkpoint)
    assert opt.param_groups[0]["lr"] == 0.01
    assert opt.state[net[0].weight]["step"].item() == 3.0
    train(tnet, topt, 4)
    train(net, opt, 4)
    for p, q in zip(net.parameters(), tnet.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_our_checkpoint_loads_into_torch(options: dict[str, Any]) -> None:
    net = make_net()
    opt = rt.RMSprop(net.parameters(), lr=0.01, **options)
    train(net, opt, 3)
    tnet = make_net(seed=5)
    tnet.load_state_dict(net.state_dict())
    topt = torch.optim.RMSprop(tnet.parameters())
    topt.load_state_dict(saved(opt))
    train(tnet, topt, 4)
    train(net, opt, 4)
    for p, q in zip(net.parameters(), tnet.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_resume_is_bit_identical(dtype: Any) -> None:
    extra = {"master_weights": True} if dtype == torch.bfloat16 else {"bias_correction": True}
    net = make_net(dtype=dtype)
    opt = rt.RMSprop(net.parameters(), momentum=0.9, centered=True, **extra)
    train(net, opt, 3)
    checkpoint = saved(opt)
    twin = make_net(seed=9, dtype=dtype)
    twin.load_state_dict(net.state_dict())
    resumed = rt.RMSprop(twin.parameters())
    resumed.load_state_dict(checkpoint)
    if dtype == torch.bfloat16:  # float32 state, never cast to the param's 16 bits
        assert resumed.state[twin[0].weight]["square_avg"].dtype == torch.float32
        assert "master_param" in resumed.state[twin[0].weight]
    train(net, opt, 3)
    train(twin, resumed, 3)
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_load_copies_and_keeps_live_buffers() -> None:
    net = make_net()
    opt = rt.RMSprop(net.parameters(), momentum=0.9)
    train(net, opt, 2)
    held = opt.state[net[0].weight]["square_avg"]
    checkpoint = saved(opt)
    opt.load_state_dict(checkpoint)
    live = opt.state[net[0].weight]["square_avg"]
    assert live.data_ptr() == held.data_ptr()
    assert live.data_ptr() != checkpoint["state"][0]["square_avg"].data_ptr()
    before = checkpoint["state"][0]["square_avg"].clone()
    train(net, opt, 1)
    assert torch.equal(checkpoint["state"][0]["square_avg"], before)


def test_torch_bfloat16_state_is_taken_as_float32() -> None:
    tnet = make_net(dtype=torch.bfloat16)
    topt = torch.optim.RMSprop(tnet.parameters())
    train(tnet, topt, 2)
    assert topt.state_dict()["state"][0]["square_avg"].dtype == torch.bfloat16
    opt = rt.RMSprop(make_net(dtype=torch.bfloat16).parameters())
    opt.load_state_dict(topt.state_dict())
    state = opt.state_dict()["state"][0]
    assert state["square_avg"].dtype == torch.float32
    torch.testing.assert_close(
        state["square_avg"], topt.state[tnet[0].weight]["square_avg"].float()
    )


def snapshot(opt: Any) -> Any:
    return (
        [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()},
    )


def bad_dicts(good: dict[str, Any]) -> dict[str, Any]:
    def edited(edit: Any) -> Any:
        sd = {
            "state": {k: dict(v) for k, v in good["state"].items()},
            "param_groups": [dict(g) for g in good["param_groups"]],
        }
        edit(sd)
        return sd

    return {
        "groups": edited(lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0]))),
        "group size": edited(lambda sd: sd["param_groups"][0].update(params=[0, 1])),
        "shape": edited(lambda sd: sd["state"][3].update(square_avg=torch.zeros(2))),
        "unknown key": edited(lambda sd: sd["state"][3].update(exp_avg=torch.zeros(1))),
        "step": edited(lambda sd: sd["state"][3].update(step=torch.tensor(-1.0))),
        "integer": edited(lambda sd: sd["state"][1].update(square_avg=torch.zeros(50).long())),
        "lr": edited(lambda sd: sd["param_groups"][0].update(lr=-1.0)),
        "capturable": edited(lambda sd: sd["param_groups"][0].update(capturable=True)),
        "no param": edited(lambda sd: sd["state"].update({7: sd["state"][0]})),
    }


@pytest.mark.parametrize(
    "bad",
    [
        "groups",
        "group size",
        "shape",
        "unknown key",
        "step",
        "integer",
        "lr",
        "capturable",
        "no param",
    ],
)
def test_refused_state_dict_changes_nothing(bad: str) -> None:
    net = make_net()
    opt = rt.RMSprop(net.parameters(), momentum=0.9)
    train(net, opt, 2)
    good = saved(opt)
    train(net, opt, 1)
    before = snapshot(opt)
    with pytest.raises((ValueError, TypeError)):
        opt.load_state_dict(bad_dicts(good)[bad])
    groups, state = snapshot(opt)
    assert groups == before[0]
    assert state.keys() == before[1].keys()
    for pid, entry in state.items():
        for k, v in entry.items():
            assert torch.equal(v, before[1][pid][k])


def test_state_replaced_directly_is_taken_in() -> None:
    """ZeroRedundancyOptimizer.load_state_dict writes optim.state[p] itself."""
    net, twin = make_net(), make_net()
    opt = rt.RMSprop(net.parameters(), momentum=0.9)
    other = rt.RMSprop(twin.parameters(), momentum=0.9)
    train(net, opt, 2)
    train(twin, other, 1)
    checkpoint = saved(opt)
    twin.load_state_dict(net.state_dict())
    for k, p in enumerate(twin.parameters()):
        other.state[p] = {key: value.clone() for key, value in checkpoint["state"][k].items()}
    train(net, opt, 2)
    train(twin, other, 2)
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    del other.state[twin[0].weight]  # forgotten state starts afresh, as in torch
    train(twin, other, 1)
    assert other.state[twin[0].weight]["step"].item() == 1.0
    assert np.isfinite(other.state[twin[0].weight]["square_avg"].numpy()).all()
