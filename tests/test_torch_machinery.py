"""rmsprop.torch.RMSprop inside torch's machinery: schedulers, closures, hooks, clipping, AMP,
refusals that change nothing, and the plain-``import rmsprop`` promise."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rmsprop.torch")


def make_net(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(10, 50), torch.nn.ReLU(), torch.nn.Linear(50, 1))


DATA = torch.Generator().manual_seed(1)
X = torch.randn(64, 10, generator=DATA)
Y = torch.randn(64, 1, generator=DATA)


def train(
    optimizer_class: Any,
    steps: int = 12,
    scheduler: Callable[[Any], Any] | None = None,
    clip: float | None = None,
    **kwargs: Any,
) -> tuple[list[float], Any, Any]:
    net = make_net()
    opt = optimizer_class(net.parameters(), **kwargs)
    sched = scheduler(opt) if scheduler else None
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(X), Y)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    return losses, net, opt


def assert_close_nets(a: Any, b: Any, atol: float = 2e-5) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=atol, rtol=1e-4)


SCHEDULERS: dict[str, Callable[[Any], Any]] = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=12),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    "LinearLR": lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.2, total_iters=5),
    "CyclicLR": lambda o: torch.optim.lr_scheduler.CyclicLR(
        o, base_lr=0.001, max_lr=0.02, step_size_up=3
    ),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_schedulers_follow_torch(name: str) -> None:
    ours = train(rt.RMSprop, scheduler=SCHEDULERS[name], lr=0.01)
    theirs = train(torch.optim.RMSprop, scheduler=SCHEDULERS[name], lr=0.01)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4)
    assert_close_nets(ours[1], theirs[1])
    assert ours[2].param_groups[0]["lr"] == theirs[2].param_groups[0]["lr"]


def test_momentum_switched_on_mid_run_gets_its_buffer() -> None:
    net = make_net()
    opt = rt.RMSprop(net.parameters(), lr=0.01)
    for momentum in (0.0, 0.0, 0.9, 0.9):
        opt.param_groups[0]["momentum"] = momentum
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(X), Y).backward()
        opt.step()
        assert ("momentum_buffer" in opt.state[net[0].weight]) == (momentum > 0)
    assert opt.state[net[0].weight]["momentum_buffer"].abs().sum() > 0


def test_clip_grad_norm_follows_torch() -> None:
    ours = train(rt.RMSprop, clip=0.05, lr=0.01, momentum=0.5)
    theirs = train(torch.optim.RMSprop, clip=0.05, lr=0.01, momentum=0.5)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4)
    assert_close_nets(ours[1], theirs[1])


def test_closure_runs_with_grad_and_its_loss_is_returned() -> None:
    net = make_net()
    opt = rt.RMSprop(net.parameters())

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(X), Y)
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    assert opt.state[net[0].weight]["step"].item() == 1.0
    assert opt.step() is None


def test_step_hooks_and_profiler() -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = rt.RMSprop([w], lr=0.1)
    calls: list[str] = []
    pre = opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    post = opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    from torch.optim.optimizer import register_optimizer_step_post_hook

    glob = register_optimizer_step_post_hook(lambda o, a, k: calls.append("global"))
    w.grad = torch.ones(3)
    opt.step()
    assert calls == ["pre", "post", "global"]
    for handle in (pre, post, glob):
        handle.remove()
    opt.step()
    assert calls == ["pre", "post", "global"]
    with torch.profiler.profile() as prof:
        opt.step()
    assert any("Optimizer.step#RMSprop.step" in e.name for e in prof.events())
    assert opt.state[w]["step"].item() == 3.0


def test_subclass_overriding_step_runs_hooks_once() -> None:
    class Logged(rt.RMSprop):
        def step(self, closure: Any = None) -> Any:
            return super().step(closure)

    w = torch.nn.Parameter(torch.ones(3))
    opt = Logged([w])
    calls: list[str] = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    w.grad = torch.ones(3)
    opt.step()
    assert calls == ["pre"] and opt.state[w]["step"].item() == 1.0


def test_grad_scaler_on_cpu_follows_torch() -> None:
    def run(optimizer_class: Any) -> Any:
        net = make_net()
        opt = optimizer_class(net.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for _ in range(5):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = torch.nn.functional.mse_loss(net(X).float(), Y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return net

    assert_close_nets(run(rt.RMSprop), run(torch.optim.RMSprop))


def test_named_params_groups_and_add_param_group() -> None:
    net = make_net()
    named = list(net.named_parameters())
    opt = rt.RMSprop(named[:2], lr=0.01)
    opt.add_param_group({"params": named[2:], "lr": 0.001})
    assert opt.param_groups[1]["param_names"] == ["2.weight", "2.bias"]
    torch.nn.functional.mse_loss(net(X), Y).backward()
    net[2].bias.grad = None  # skipped: no state, unchanged
    before = net[2].bias.detach().clone()
    opt.step()
    assert net[2].bias not in opt.state and torch.equal(net[2].bias, before)
    assert opt.state_dict()["param_groups"][1]["params"] == [2, 3]
    net[2].weight.grad = torch.ones(1, 50)
    net[2].weight.grad.data = torch.ones(3, 50)  # .data skips torch's own shape check
    with pytest.raises(ValueError, match=r"param 2 \('2.weight'\)"):
        opt.step()


def snapshot(net: Any, opt: Any) -> Any:
    return (
        [p.detach().clone() for p in net.parameters()],
        {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()},
    )


def assert_unchanged(net: Any, opt: Any, before: Any) -> None:
    params, state = before
    for p, q in zip(net.parameters(), params):
        assert torch.equal(p, q)
    assert {id(p) for p in opt.state} == set(state)
    for p, s in opt.state.items():
        assert s.keys() == state[id(p)].keys()
        for k, v in s.items():
            assert torch.equal(v, state[id(p)][k])


# (make the bad grad, assign it through .data (which skips torch's own checks), error, message)
BAD_GRADS: dict[str, tuple[Callable[[Any], Any], bool, type[Exception], str]] = {
    "sparse": (lambda p: torch.ones_like(p).to_sparse(), False, ValueError, "sparse"),
    "dtype": (lambda p: torch.ones_like(p, dtype=torch.float64), True, TypeError, "dtype"),
    "shape": (lambda p: torch.ones(p.numel() + 1), True, ValueError, "shape"),
    "requires-grad-ok": (lambda p: torch.ones_like(p, requires_grad=True), False, None, ""),
}


@pytest.mark.parametrize("bad", list(BAD_GRADS))
def test_refused_grad_changes_nothing(bad: str) -> None:
    make_grad, through_data, error, message = BAD_GRADS[bad]
    net = make_net()
    opt = rt.RMSprop(net.parameters(), momentum=0.9)
    torch.nn.functional.mse_loss(net(X), Y).backward()
    opt.step()  # params 0..3 have state now
    torch.nn.functional.mse_loss(net(X), Y).backward()
    before = snapshot(net, opt)
    weight = net[0].weight
    if through_data:
        weight.grad.data = make_grad(weight)
    else:
        weight.grad = make_grad(weight)
    if error is None:  # accepted: a grad that itself requires grad (create_graph=True)
        opt.step()
        assert opt.state[weight]["step"].item() == 2.0
        return
    with pytest.raises(error, match=message) as info:
        opt.step()
    assert "param 0 " in str(info.value) or str(info.value).endswith("param 0")
    assert_unchanged(net, opt, before)


def test_refused_first_step_creates_no_state() -> None:
    a, b = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    opt = rt.RMSprop([a, b])
    a.grad, b.grad = torch.ones(4), torch.ones(4)
    b.grad.data = torch.ones(5)
    with pytest.raises(ValueError, match="param 1"):
        opt.step()
    assert len(opt.state) == 0 and torch.equal(a, torch.ones(4))
    b.grad = torch.ones(4)
    opt.step()
    assert opt.state[a]["step"].item() == 1.0


BAD_PARAMS: dict[str, tuple[Callable[[], Any], type[Exception], str]] = {
    "meta": (lambda: torch.nn.Parameter(torch.ones(3, device="meta")), ValueError, "device"),
    "int": (lambda: torch.ones(3, dtype=torch.int64), TypeError, "dtype"),
    "complex": (
        lambda: torch.nn.Parameter(torch.ones(3, dtype=torch.complex64)),
        TypeError,
        "complex",
    ),
    "non-contiguous": (lambda: torch.nn.Parameter(torch.ones(3, 4).t()), ValueError, "contig"),
    "sparse": (lambda: torch.nn.Parameter(torch.ones(3).to_sparse()), ValueError, "layout"),
}


@pytest.mark.parametrize("bad", list(BAD_PARAMS))
def test_refused_params(bad: str) -> None:
    make, error, message = BAD_PARAMS[bad]
    good = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(error, match=message) as info:
        rt.RMSprop([good, make()])
    assert "param 1" in str(info.value)
    opt = rt.RMSprop([good])
    with pytest.raises(error, match=message):
        opt.add_param_group({"params": [make()]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("flag", ["capturable", "differentiable"])
def test_capturable_and_differentiable_refused(flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        rt.RMSprop([torch.nn.Parameter(torch.ones(2))], **{flag: True})


def test_foreach_accepted_and_ignored() -> None:
    results = []
    for foreach in (None, False, True):
        w = torch.nn.Parameter(torch.ones(7))
        opt = rt.RMSprop([w], foreach=foreach)
        w.grad = torch.arange(7.0)
        opt.step()
        results.append(w.detach().clone())
    assert all(torch.equal(r, results[0]) for r in results)


def test_non_contiguous_grad_is_read_like_torch() -> None:
    a, b = torch.nn.Parameter(torch.ones(3, 4)), torch.nn.Parameter(torch.ones(3, 4))
    opt = rt.RMSprop([a, b])
    grad = torch.arange(12.0).reshape(4, 3)
    a.grad, b.grad = grad.t(), grad.t().contiguous()
    assert not a.grad.is_contiguous()
    opt.step()
    assert torch.equal(a, b)


def test_tensor_lr_and_version_counter() -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = rt.RMSprop([w], lr=torch.tensor(0.1))
    y = (w * w).sum()  # saves w for backward
    w.grad = torch.ones(3)
    opt.step()
    assert (w < 1).all()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_storage_swapped_under_the_optimizer() -> None:
    """ZeroRedundancyOptimizer's bucket views set ``p.data``; the next step follows it."""
    w = torch.nn.Parameter(torch.ones(6))
    opt = rt.RMSprop([w], lr=0.1)
    w.grad = torch.ones(6)
    opt.step()
    bucket = torch.zeros(10)
    bucket[2:8].copy_(w.data)
    w.data = bucket[2:8]
    w.grad = torch.ones(6)
    opt.step()
    assert torch.equal(bucket[2:8], w.detach()) and (bucket[2:8] < w.new_ones(6) - 0.1).all()
    assert bucket[0] == 0 and bucket[9] == 0


def test_pickle_and_deepcopy_continue_identically() -> None:
    _, net, opt = train(rt.RMSprop, steps=3, momentum=0.9, centered=True)
    clone_net = copy.deepcopy(net)
    clone = rt.RMSprop(clone_net.parameters())
    clone.load_state_dict(pickle.loads(pickle.dumps(opt.state_dict())))
    twin = copy.deepcopy(opt)
    assert twin.state_dict()["state"][0]["step"].item() == 3.0
    for o, n in ((opt, net), (clone, clone_net)):
        o.zero_grad()
        torch.nn.functional.mse_loss(n(X), Y).backward()
        o.step()
    for p, q in zip(net.parameters(), clone_net.parameters()):
        assert torch.equal(p, q)


def test_import_rmsprop_does_not_import_torch() -> None:
    code = "import sys, rmsprop; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docstring_examples() -> None:
    import doctest

    import rmsprop.torch._optimizer

    for module in (rt, rmsprop.torch._optimizer):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_skip_if_nonfinite_skips_the_whole_step() -> None:
    a, b = torch.nn.Parameter(torch.ones(5)), torch.nn.Parameter(torch.ones(3))
    opt = rt.RMSprop([a, b], skip_if_nonfinite=True)
    a.grad, b.grad = torch.ones(5), torch.tensor([1.0, float("inf"), 1.0])
    opt.step()
    assert opt.last_step_skipped and len(opt.state) == 0
    assert torch.equal(a, torch.ones(5)) and torch.equal(b, torch.ones(3))
    b.grad = torch.ones(3)
    opt.step()
    assert not opt.last_step_skipped and opt.state[b]["step"].item() == 1.0
