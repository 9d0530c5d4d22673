"""rmsprop.torch.RMSprop with compact state (state_dtype "bfloat16" / "8bit", SPEC §6 and §8):
zero-copy torch views of the core's buffers, bit for bit what rmsprop.RMSprop does, checkpoints
that resume bit-identically, and refusals that change nothing."""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import pytest

import rmsprop

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rmsprop.torch")
pytest.importorskip("ml_dtypes")

from rmsprop.torch._tensors import array_of  # noqa: E402

# A 4880-element matrix (8-bit state, its last block partial) and a 10-element bias (float32
# state under "8bit").
SHAPES = [(80, 61), (10,)]
OPTIONS: list[dict[str, Any]] = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    {"centered": True, "momentum": 0.5},
    {"momentum": 0.9, "master_weights": True, "bias_correction": True},
]
OPTION_IDS = ["plain", "momentum", "nesterov-wd", "centered", "master-bias"]


def cases() -> list[tuple[str, dict[str, Any]]]:
    return [
        (state_dtype, options)
        for state_dtype in ("bfloat16", "8bit")
        for options in OPTIONS
        if not (state_dtype == "8bit" and options.get("centered"))
    ]


def make_params(dtype: Any, seed: int = 0) -> list[Any]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen).to(dtype) for shape in SHAPES]


def grads_for(params: list[Any], seed: int) -> list[Any]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen).to(p.dtype) for p in params]


def core_array(tensor: Any) -> np.ndarray:
    """A state tensor as the NumPy class keeps it (bfloat16 as uint16 bits)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def assert_state_equal(ours: dict[str, Any], numpy_state: dict[str, Any]) -> None:
    assert [k for k in ours] == [k for k in numpy_state]
    assert float(ours["step"]) == numpy_state["step"]
    for key, value in numpy_state.items():
        if key != "step":
            theirs = core_array(ours[key])
            assert theirs.dtype == value.dtype and theirs.tobytes() == value.tobytes(), key


def run_both(
    dtype: Any, state_dtype: str, options: dict[str, Any], steps: int = 4
) -> tuple[Any, list[Any], rmsprop.RMSprop, list[np.ndarray]]:
    params = make_params(dtype)
    arrays = [array_of(p.clone()) for p in params]
    kwargs = {"lr": 0.01, "alpha": 0.9, "state_dtype": state_dtype, **options}
    if dtype == torch.bfloat16:
        kwargs.update(stochastic_rounding=True, rounding_seed=5)
    opt = rt.RMSprop(params, **kwargs)
    reference = rmsprop.RMSprop(arrays, **kwargs)
    for step in range(steps):
        grads = grads_for(params, 100 + step)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        reference.step([array_of(g) for g in grads])
    return opt, params, reference, arrays


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(("state_dtype", "options"), cases(), ids=repr)
def test_bit_identical_to_the_numpy_class(dtype: Any, state_dtype: str, options: Any) -> None:
    opt, params, reference, arrays = run_both(dtype, state_dtype, options)
    for k, (param, array) in enumerate(zip(params, arrays)):
        assert array_of(param).tobytes() == array.tobytes()
        assert_state_equal(opt.state[param], reference.state[k])


@pytest.mark.parametrize("state_dtype", ["bfloat16", "8bit"])
def test_state_tensors_share_the_core_buffers(state_dtype: str) -> None:
    opt, params, _, _ = run_both(torch.float32, state_dtype, {"momentum": 0.9}, steps=1)
    big, small = (opt.state[p] for p in params)
    if state_dtype == "8bit":
        assert big["square_avg"].dtype == torch.uint8
        assert big["square_avg_scale"].dtype == torch.float32
        assert big["square_avg_scale"].shape == (-(-80 * 61 // 256),)
        assert small["square_avg"].dtype == torch.float32  # under 4096 elements
        assert small["momentum_buffer"].dtype == torch.float32
    else:
        assert big["square_avg"].dtype == torch.bfloat16
        assert small["square_avg"].dtype == torch.bfloat16
    assert big["momentum_buffer"].dtype == torch.bfloat16
    pointers = {key: big[key].data_ptr() for key in big if key != "step"}
    before = {key: big[key].clone() for key in pointers}
    for p, g in zip(params, grads_for(params, 7)):
        p.grad = g
    opt.step()
    core = opt._states[0]
    for key, pointer in pointers.items():
        assert opt.state[params[0]][key].data_ptr() == pointer == core[key].ctypes.data
        assert not torch.equal(opt.state[params[0]][key], before[key]), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("state_dtype", ["bfloat16", "8bit"])
def test_torch_save_load_round_trip_resumes_bit_identically(dtype: Any, state_dtype: str) -> None:
    opt, params, _, _ = run_both(dtype, state_dtype, {"momentum": 0.9}, steps=3)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    assert saved["param_groups"][0]["state_dtype"] == state_dtype
    assert set(saved["state"][0]) >= {"step", "square_avg", "momentum_buffer"}
    copies = [p.detach().clone() for p in params]
    fresh = rt.RMSprop(copies, **{k: v for k, v in opt.defaults.items() if k != "params"})
    fresh.load_state_dict(saved)
    unpickled = pickle.loads(pickle.dumps(opt))
    unpickled_params = unpickled.param_groups[0]["params"]
    for step in range(3):
        grads = grads_for(params, 200 + step)
        for group in (params, copies, unpickled_params):
            for p, g in zip(group, grads):
                p.grad = g.clone()
        opt.step()
        fresh.step()
        unpickled.step()
    for other, other_params in ((fresh, copies), (unpickled, unpickled_params)):
        for p, q in zip(params, other_params):
            assert array_of(p).tobytes() == array_of(q).tobytes()
            for key, value in opt.state[p].items():
                assert core_array(value).tobytes() == core_array(other.state[q][key]).tobytes()


def snapshot(opt: Any, params: list[Any]) -> Any:
    return (
        [p.detach().clone() for p in params],
        [{k: v.clone() for k, v in opt.state[p].items()} for p in params if p in opt.state],
        [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups],
    )


def assert_unchanged(opt: Any, params: list[Any], before: Any) -> None:
    after = snapshot(opt, params)
    for a, b in zip(before[0], after[0]):
        assert torch.equal(a, b)
    assert len(before[1]) == len(after[1])
    for a, b in zip(before[1], after[1]):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key])
    assert before[2] == after[2]


def stepped(state_dtype: str, seed: int = 0) -> tuple[Any, list[Any]]:
    params = make_params(torch.float32, seed)
    opt = rt.RMSprop(params, lr=0.01, momentum=0.9, state_dtype=state_dtype)
    for p, g in zip(params, grads_for(params, seed + 1)):
        p.grad = g
    opt.step()
    return opt, params


@pytest.mark.parametrize(
    ("saved_with", "loaded_into"),
    [
        ("bfloat16", "8bit"),
        ("8bit", "bfloat16"),
        ("float32", "bfloat16"),
        ("bfloat16", "float32"),
        ("8bit", "float32"),
        ("torch", "bfloat16"),
        ("torch", "8bit"),
    ],
)
def test_loading_another_state_dtype_is_refused_and_changes_nothing(
    saved_with: str, loaded_into: str
) -> None:
    if saved_with == "torch":
        params = make_params(torch.float32, 3)
        other = torch.optim.RMSprop(params, lr=0.01, momentum=0.9)
        for p, g in zip(params, grads_for(params, 4)):
            p.grad = g
        other.step()
        saved = other.state_dict()
    else:
        saved = stepped(saved_with, 3)[0].state_dict()
    opt, params = stepped(loaded_into)
    before = snapshot(opt, params)
    expected = "float32" if saved_with == "torch" else saved_with
    with pytest.raises(
        ValueError, match=rf"state_dtype='{expected}'.*state_dtype='{loaded_into}'"
    ) as info:
        opt.load_state_dict(saved)
    assert f"Create the optimizer with state_dtype='{expected}'" in str(info.value)
    if saved_with == "torch":
        assert "no state_dtype key" in str(info.value)
    assert_unchanged(opt, params, before)


@pytest.mark.parametrize(
    ("key", "bad", "error", "match"),
    [
        ("square_avg", lambda v: v.float(), TypeError, r"torch\.bfloat16"),
        ("square_avg", lambda v: v[:-1], ValueError, "has shape"),
        ("square_avg_scale", lambda v: v[:-1], ValueError, "one scale per 256"),
        ("square_avg_scale", lambda v: v.double(), TypeError, r"torch\.float32"),
        ("momentum_buffer", lambda v: v.to(torch.int16), TypeError, r"torch\.bfloat16"),
    ],
)
def test_wrongly_typed_compact_entries_are_refused(
    key: str, bad: Any, error: Any, match: str
) -> None:
    state_dtype = "8bit" if key == "square_avg_scale" else "bfloat16"
    saved = stepped(state_dtype, 5)[0].state_dict()
    saved["state"][0] = {**saved["state"][0], key: bad(saved["state"][0][key])}
    opt, params = stepped(state_dtype)
    before = snapshot(opt, params)
    with pytest.raises(error, match=match):
        opt.load_state_dict(saved)
    assert_unchanged(opt, params, before)


def test_scale_entry_in_bfloat16_state_is_refused() -> None:
    saved = stepped("bfloat16", 5)[0].state_dict()
    saved["state"][0] = {**saved["state"][0], "square_avg_scale": torch.ones(20)}
    opt, params = stepped("bfloat16")
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match="does not belong to state_dtype='bfloat16'"):
        opt.load_state_dict(saved)
    assert_unchanged(opt, params, before)


def test_numpy_class_state_dict_loads_and_continues_identically() -> None:
    _, params, reference, arrays = run_both(torch.float32, "8bit", {"momentum": 0.9}, steps=2)
    copies = [p.detach().clone() for p in params]
    opt = rt.RMSprop(copies, lr=0.01, alpha=0.9, momentum=0.9, state_dtype="8bit")
    opt.load_state_dict(reference.state_dict())
    grads = grads_for(params, 300)
    for p, g in zip(copies, grads):
        p.grad = g
    opt.step()
    reference.step([array_of(g) for g in grads])
    for k, (p, a) in enumerate(zip(copies, arrays)):
        assert array_of(p).tobytes() == a.tobytes()
        assert_state_equal(opt.state[p], reference.state[k])


def test_centered_8bit_and_float64_params_are_refused() -> None:
    w = torch.zeros(5000)
    with pytest.raises(ValueError, match="centered=True is not supported with state_dtype='8bit'"):
        rt.RMSprop([w], centered=True, state_dtype="8bit")
    with pytest.raises(TypeError, match=r"float64.*state_dtype='float32'"):
        rt.RMSprop([torch.zeros(3, dtype=torch.float64)], state_dtype="bfloat16")
    opt = rt.RMSprop([w], state_dtype="8bit")
    with pytest.raises(ValueError, match="centered=True"):
        opt.add_param_group({"params": [torch.zeros(3)], "centered": True})
    with pytest.raises(TypeError, match="float64"):
        opt.add_param_group({"params": [torch.zeros(3, dtype=torch.float64)]})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [torch.zeros(3, dtype=torch.float64)], "state_dtype": "float32"})


def test_changing_state_dtype_after_the_first_step_is_refused() -> None:
    opt, params = stepped("bfloat16")
    opt.param_groups[0]["state_dtype"] = "float32"
    for p, g in zip(params, grads_for(params, 9)):
        p.grad = g
    before = snapshot(opt, params)
    with pytest.raises(TypeError, match="state_dtype"):
        opt.step()
    assert_unchanged(opt, params, before)


def test_schedulers_drive_compact_state_runs() -> None:
    params = make_params(torch.float32)
    arrays = [array_of(p.clone()) for p in params]
    opt = rt.RMSprop(params, lr=0.05, momentum=0.9, state_dtype="bfloat16")
    reference = rmsprop.RMSprop(arrays, lr=0.05, momentum=0.9, state_dtype="bfloat16")
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=6)
    for step in range(5):
        grads = grads_for(params, 400 + step)
        for p, g in zip(params, grads):
            p.grad = g
        for key in ("lr", "momentum"):
            reference.param_groups[0][key] = opt.param_groups[0][key]
        opt.step()
        reference.step([array_of(g) for g in grads])
        scheduler.step()
    for k, (p, a) in enumerate(zip(params, arrays)):
        assert array_of(p).tobytes() == a.tobytes()
        assert_state_equal(opt.state[p], reference.state[k])


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9, "centered": True}], ids=repr)
def test_sparse_embedding_with_bfloat16_state_matches_the_numpy_row_step(options: Any) -> None:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(300, 20, sparse=True)
    table0 = emb.weight.detach().numpy().copy()
    reference = table0.copy()
    kwargs = {"lr": 0.05, "state_dtype": "bfloat16", **options}
    opt = rt.RMSprop(emb.parameters(), **kwargs)
    ref_opt = rmsprop.RMSprop([reference], **kwargs)
    ids = torch.tensor([3, 170, 3, 0, 296])
    for step in range(3):
        emb.zero_grad()
        (emb(ids + step) * torch.arange(1.0, 21.0)).sum().backward()
        grad = emb.weight.grad
        assert grad.layout == torch.sparse_coo
        if step:
            state_before = {k: v.clone() for k, v in opt.state[emb.weight].items()}
        opt.step()
        ref_opt.step([rmsprop.RowGrad(grad._indices()[0].numpy(), grad._values().numpy())])
        np.testing.assert_array_equal(emb.weight.detach().numpy(), reference)
        assert_state_equal(opt.state[emb.weight], ref_opt.state[0])
        if step:
            untouched = [r for r in range(300) if r not in set((ids + step).tolist())]
            for key, value in state_before.items():
                if key != "step":
                    now = opt.state[emb.weight][key]
                    assert torch.equal(
                        now[untouched].view(torch.int16), value[untouched].view(torch.int16)
                    )
    assert opt.state[emb.weight]["square_avg"].dtype == torch.bfloat16


def test_sparse_embedding_with_8bit_state_is_refused_unless_small() -> None:
    emb = torch.nn.Embedding(300, 20, sparse=True)  # 6000 elements: 8-bit state
    small = torch.nn.Embedding(30, 20, sparse=True)  # 600 elements: float32 state
    opt = rt.RMSprop([*emb.parameters(), *small.parameters()], lr=0.05, state_dtype="8bit")
    (emb(torch.tensor([1, 2])).sum() + small(torch.tensor([4])).sum()).backward()
    before = snapshot(opt, [emb.weight, small.weight])
    with pytest.raises(ValueError, match=r"gradient of param 0 is a RowGrad.*8-bit state.*scale"):
        opt.step()
    assert_unchanged(opt, [emb.weight, small.weight], before)
    emb.weight.grad = None
    opt.step()
    assert opt.state[small.weight]["square_avg"].dtype == torch.float32
    assert not torch.equal(small.weight, before[0][1])
