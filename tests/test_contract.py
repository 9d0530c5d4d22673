"""The user-facing contract: in-place updates, refusals that change nothing, state, checkpoints."""

from __future__ import annotations

import copy
import pickle
from typing import Any, Callable

import numpy as np
import pytest

import rmsprop
from rmsprop import RMSprop
from rmsprop.functional import DEFAULT_OPTIONS, OPTION_NAMES, rmsprop_step


def make(n: int = 10, dtype: Any = np.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)


# ---------------------------------------------------------------- in place, no copies


def test_updates_the_callers_own_arrays_in_place() -> None:
    w = np.ones((50, 10), np.float32)
    b = np.zeros(50, np.float32)
    addresses = (w.ctypes.data, b.ctypes.data)
    opt = RMSprop([w, b], lr=0.01, alpha=0.9)
    opt.step([np.ones_like(w), np.ones_like(b)])
    assert (w.ctypes.data, b.ctypes.data) == addresses
    assert np.all(w < 1) and np.all(b < 0)


def test_state_arrays_are_live_views_updated_in_place() -> None:
    p, g = make()
    opt = RMSprop([p], momentum=0.9, centered=True)
    opt.step([g])
    views = {k: v for k, v in opt.state[0].items() if k != "step"}
    addresses = {k: v.ctypes.data for k, v in views.items()}
    before = {k: v.copy() for k, v in views.items()}
    opt.step([g])
    for key, view in views.items():
        assert opt.state[0][key] is view
        assert view.ctypes.data == addresses[key]
        assert not np.array_equal(view, before[key])
        assert view.ctypes.data % 64 == 0  # cache-line aligned


def test_state_layout_and_step_counts() -> None:
    p, g = make()
    q, h = make(seed=1)
    opt = RMSprop([p, q], momentum=0.5, centered=True)
    assert opt.state == [{}, {}]
    opt.step([g, None])
    assert opt.state[0]["step"] == 1 and opt.state[1] == {}
    assert set(opt.state[0]) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
    assert opt.state[0]["square_avg"].dtype == p.dtype
    opt.step([g, h])
    assert opt.state[0]["step"] == 2 and opt.state[1]["step"] == 1


def test_none_gradient_leaves_param_and_state_untouched() -> None:
    p, g = make()
    q, h = make(seed=1)
    opt = RMSprop([p, q])
    opt.step([g, h])
    q_before, state_before = q.copy(), opt.state[1]["square_avg"].copy()
    opt.step([g, None])
    assert np.array_equal(q, q_before)
    assert np.array_equal(opt.state[1]["square_avg"], state_before)
    assert opt.state[1]["step"] == 1


def test_read_only_gradient_is_fine() -> None:
    p, g = make()
    g.flags.writeable = False
    RMSprop([p]).step([g])


def test_param_groups_have_their_own_hyper_parameters_and_lr_edits_apply() -> None:
    p, g = make()
    q = p.copy()
    opt = RMSprop([{"params": [p]}, {"params": [q], "lr": 0.0}], lr=0.1)
    assert opt.param_groups[1]["lr"] == 0.0 and opt.param_groups[0]["lr"] == 0.1
    opt.step([g, g])
    assert not np.array_equal(p, q)
    p_before = p.copy()
    opt.param_groups[0]["lr"] = 0.0
    opt.step([g, g])
    assert np.array_equal(p, p_before)


def test_mixed_dtypes_in_one_group() -> None:
    p32, g32 = make(dtype=np.float32)
    p64, g64 = make(dtype=np.float64)
    opt = RMSprop([p32, p64])
    opt.step([g32, g64])
    np.testing.assert_allclose(p32, p64, rtol=1e-6)


def test_zero_size_and_zero_dim_params() -> None:
    empty = np.zeros((0, 3), np.float32)
    scalar = np.array(1.0, np.float64)
    opt = RMSprop([empty, scalar], lr=0.5)
    opt.step([np.zeros((0, 3), np.float32), np.array(2.0)])
    assert scalar < 1.0


def test_functional_step_updates_in_place() -> None:
    p, g = make(dtype=np.float64)
    v = np.zeros_like(p)
    p_address = p.ctypes.data
    before = p.copy()
    assert rmsprop_step(p, g, v, lr=0.1) is None
    assert p.ctypes.data == p_address and not np.array_equal(p, before)
    np.testing.assert_allclose(v, 0.01 * g * g, rtol=1e-15)


def test_functional_and_optimizer_agree_bitwise_for_every_option() -> None:
    p0, g = make(33, np.float32)
    for name in OPTION_NAMES:
        options = dict(DEFAULT_OPTIONS)
        default = options[name]
        options[name] = (
            (not default)
            if isinstance(default, bool)
            else (0.3 if isinstance(default, float) else 7)
        )
        if name == "nesterov" or name == "lr_in_momentum":
            options["momentum"] = 0.9
        if name == "decoupled_weight_decay":
            options["weight_decay"] = 0.1
        p1, p2 = p0.copy(), p0.copy()
        opt = RMSprop([p1], **options)
        opt.step([g])
        v = np.zeros_like(p0)
        ga, m = np.zeros_like(p0), np.zeros_like(p0)
        rmsprop_step(p2, g, v, grad_avg=ga, momentum_buffer=m, **options)
        assert p1.tobytes() == p2.tobytes(), name


def test_option_names_order_is_the_cores() -> None:
    assert tuple(DEFAULT_OPTIONS) == OPTION_NAMES


# ---------------------------------------------------------------- refusals


def snapshot(arrays: list[np.ndarray]) -> list[bytes]:
    return [a.tobytes() for a in arrays]


def assert_refused_and_unchanged(
    opt: RMSprop, grads: list, exc: type, match: str, watched: list[np.ndarray]
) -> None:
    state_before = copy.deepcopy(opt.state)
    before = snapshot(watched)
    with pytest.raises(exc, match=match):
        opt.step(grads)
    assert snapshot(watched) == before
    assert len(opt.state) == len(state_before)
    for now, then in zip(opt.state, state_before):
        assert now.keys() == then.keys()
        for key in now:
            if isinstance(now[key], np.ndarray):
                assert now[key].tobytes() == then[key].tobytes()
            else:
                assert now[key] == then[key]


@pytest.fixture
def two_params():
    p, g = make(10, seed=0)
    q, h = make(12, seed=1)
    opt = RMSprop([p, q], momentum=0.9, centered=True)
    opt.step([g, h])  # state exists, so refusals must also leave it untouched
    return opt, p, q, g, h


BAD_SECOND_GRAD: list[tuple[str, Callable[[np.ndarray], Any], type, str]] = [
    ("float64 grad", lambda h: h.astype(np.float64), TypeError, r"grads\[1\].*float64.*float32"),
    ("int grad", lambda h: h.astype(np.int32), TypeError, r"grads\[1\].*int32"),
    ("float16 grad", lambda h: h.astype(np.float16), TypeError, r"grads\[1\]"),
    ("list grad", lambda h: h.tolist(), TypeError, r"grads\[1\] must be a numpy.ndarray"),
    ("wrong shape", lambda h: h[:-1].copy(), ValueError, r"grads\[1\] has shape \(11,\)"),
    ("2-d shape", lambda h: h.reshape(3, 4), ValueError, r"grads\[1\] has shape \(3, 4\)"),
    ("strided", lambda h: np.repeat(h, 2)[::2], ValueError, r"grads\[1\] is not C-contiguous"),
    ("byteswapped", lambda h: h.astype(">f4"), ValueError, r"grads\[1\].*byte order"),
]


@pytest.mark.parametrize("bad", BAD_SECOND_GRAD, ids=[b[0] for b in BAD_SECOND_GRAD])
def test_bad_gradient_refused_and_nothing_modified(two_params, bad) -> None:
    opt, p, q, g, h = two_params
    _, transform, exc, match = bad
    watched = [p, q]
    assert_refused_and_unchanged(opt, [g, transform(h)], exc, match, watched)


def test_wrong_number_of_gradients(two_params) -> None:
    opt, p, q, g, _ = two_params
    assert_refused_and_unchanged(opt, [g], ValueError, "1 gradients for 2 params", [p, q])


def test_single_array_instead_of_list(two_params) -> None:
    opt, _, _, g, _ = two_params
    with pytest.raises(TypeError, match=r"step\(\[grad\]\)"):
        opt.step(g)


def test_gradient_that_is_the_param_itself_is_refused(two_params) -> None:
    opt, p, q, g, _ = two_params
    assert_refused_and_unchanged(
        opt, [g, q], ValueError, r"params\[1\] and grads\[1\] share", [p, q]
    )


def test_gradient_overlapping_another_param_is_refused(two_params) -> None:
    _, _, _, g, _ = two_params
    big = np.zeros(22, np.float32)
    p2, q2 = big[:10], big[10:]
    opt2 = RMSprop([p2, q2])
    overlapping = big[5:17]  # shares bytes with both params
    assert_refused_and_unchanged(opt2, [g, overlapping], ValueError, "share memory", [big])


def test_read_only_param_refused_before_anything_changes(two_params) -> None:
    opt, p, q, g, h = two_params
    q.flags.writeable = False
    try:
        assert_refused_and_unchanged(opt, [g, h], ValueError, r"params\[1\] is read-only", [p, q])
    finally:
        q.flags.writeable = True


def test_param_replaced_by_non_contiguous_view_refused(two_params) -> None:
    opt, p, q, g, h = two_params
    opt.param_groups[0]["params"][1] = np.zeros(24, np.float32)[::2]
    assert_refused_and_unchanged(
        opt, [g, h], ValueError, r"params\[1\] is not C-contiguous", [p, q]
    )


def test_unaligned_param_refused() -> None:
    raw = np.zeros(41, np.uint8)
    unaligned = raw[1:].view(np.float32)
    assert not unaligned.flags.aligned
    with pytest.raises(ValueError, match="aligned"):
        RMSprop([unaligned]).step([np.zeros(10, np.float32)])


def test_corrupted_state_buffer_refused(two_params) -> None:
    opt, p, q, g, h = two_params
    opt.state[1]["square_avg"] = np.zeros(12, np.float64)
    assert_refused_and_unchanged(
        opt, [g, h], TypeError, r"state\[1\]\['square_avg'\] has dtype float64", [p, q]
    )


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("lr", -1.0, "lr must be a finite number >= 0"),
        ("lr", float("nan"), "lr"),
        ("eps", -1e-8, "eps"),
        ("alpha", 1.5, r"alpha must be in \[0, 1\]"),
        ("alpha", -0.1, "alpha"),
        ("momentum", -0.9, "momentum"),
        ("weight_decay", -1.0, "weight_decay"),
        ("weight_decay", float("inf"), "weight_decay"),
        ("initial_square_avg", -1.0, "initial_square_avg"),
        ("lr", "0.1", "lr must be a real"),
    ],
)
def test_bad_hyper_parameters_refused_at_construction(name: str, value: Any, match: str) -> None:
    p, _ = make()
    with pytest.raises((ValueError, TypeError), match=match):
        RMSprop([p], **{name: value})


def test_bad_hyper_parameter_set_later_refused_at_step_for_all_groups() -> None:
    p, g = make()
    q, h = make(seed=1)
    opt = RMSprop([{"params": [p]}, {"params": [q]}])
    opt.param_groups[1]["alpha"] = 2.0
    with pytest.raises(ValueError, match="alpha"):
        opt.step([g, h])
    assert opt.state == [{}, {}]  # the first group was not stepped either


@pytest.mark.parametrize(
    ("key", "value", "exc", "match"),
    [
        ("initial_square_avg", "x", TypeError, "initial_square_avg must be a real number"),
        ("initial_square_avg", float("nan"), ValueError, "initial_square_avg must be a finite"),
        ("initial_square_avg", -1.0, ValueError, "initial_square_avg"),
        ("master_weights", "yes", TypeError, "master_weights must be True or False"),
        ("master_weights", None, ValueError, "missing hyper-parameter 'master_weights'"),
        ("lr", None, ValueError, "missing hyper-parameter 'lr'"),
    ],
)
def test_group_edited_before_the_first_step_is_refused_without_creating_state(
    key: str, value: Any, exc: type, match: str
) -> None:
    """State is created on the first step from the group's options; a bad option there must
    not leave half-made state behind (a later load_state_dict would choke on it)."""
    p, g = make()
    q, h = make(seed=1)
    opt = RMSprop([{"params": [p]}, {"params": [q]}])
    if value is None:
        del opt.param_groups[1][key]
    else:
        opt.param_groups[1][key] = value
    before = snapshot([p, q])
    with pytest.raises(exc, match=match):
        opt.step([g, h])
    assert opt.state == [{}, {}]
    assert snapshot([p, q]) == before


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("centered", "False"),
        ("maximize", 0.5),
        ("nesterov", None),
        ("eps_in_sqrt", 2),
        ("lr", True),
        ("rounding_seed", 1.5),
        ("rounding_seed", -1),
    ],
)
def test_options_are_not_taken_by_truthiness(name: str, value: Any) -> None:
    """centered="False" must not switch centering on; lr=True must not mean lr=1."""
    p, g = make()
    with pytest.raises(TypeError, match=name):
        RMSprop([p], momentum=0.9, **{name: value})
    with pytest.raises(TypeError, match=name):
        rmsprop_step(p, g, np.zeros_like(p), momentum_buffer=np.zeros_like(p), **{name: value})


def test_numpy_scalars_are_accepted_where_python_ones_are() -> None:
    p, g = make()
    q = p.copy()
    options = {"lr": np.float32(0.01), "centered": np.True_, "eps_in_sqrt": 1}
    RMSprop([p], rounding_seed=np.int64(3), **options).step([g])
    v, ga = np.zeros_like(q), np.zeros_like(q)
    rmsprop_step(q, g, v, grad_avg=ga, step=np.int64(1), rounding_seed=np.uint8(3), **options)
    assert p.tobytes() == q.tobytes()
    with pytest.raises(TypeError, match="step must be an int, got bool"):
        rmsprop_step(q, g, v, grad_avg=ga, step=True, **options)


def test_step_count_out_of_range_is_refused_and_changes_nothing() -> None:
    p, g = make()
    opt = RMSprop([p])
    opt.step([g])
    opt.state[0]["step"] = 2**63 - 1  # step + 1 would overflow the core's integer
    assert_refused_and_unchanged(opt, [g], ValueError, r"state\[0\]\['step'\] must be in", [p])
    opt.state[0]["step"] = np.int64(5)  # a NumPy integer is an int
    opt.step([g])
    assert opt.state[0]["step"] == 6


def test_option_deleted_after_the_first_step_is_a_value_error() -> None:
    p, g = make()
    opt = RMSprop([p])
    opt.step([g])
    del opt.param_groups[0]["lr"]
    assert_refused_and_unchanged(opt, [g], ValueError, "missing hyper-parameter 'lr'", [p])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lr": 1e39}, "lr = 1e[+]?39 is beyond float32's range"),
        ({"lr": 1e20, "weight_decay": 1e20}, r"lr \* weight_decay = 1e[+]?40"),
        ({"grad_scale": 1e-50}, "grad_scale = 1e-50 rounds to 0"),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_hyper_parameters_beyond_float32_range_refused_for_float_params(
    options: dict[str, float], match: str, dtype: Any
) -> None:
    """Valid doubles that round to inf (or 0) in the float32 the step computes in."""
    p, g = make(dtype=dtype)
    opt = RMSprop([p], **options)
    before = snapshot([p])
    with pytest.raises(ValueError, match=match):
        opt.step([g])
    assert snapshot([p]) == before and opt.state == [{}]
    q, h = make(dtype=np.float64)
    RMSprop([q], **options).step([h])  # float64 holds them


def test_grads_must_be_a_sequence() -> None:
    p, _ = make()
    opt = RMSprop([p])
    with pytest.raises(TypeError, match="grads must be a list"):
        opt.step(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="grads must be a list"):
        opt.step(3.0)  # type: ignore[arg-type]


def test_functional_master_param_only_for_sixteen_bit_params() -> None:
    p, g = make()
    with pytest.raises(ValueError, match="master_param is only for float16/bfloat16"):
        rmsprop_step(p, g, np.zeros_like(p), master_param=p.copy())


def test_option_conflicts_refused() -> None:
    p, _ = make()
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        RMSprop([p], nesterov=True)
    with pytest.raises(ValueError, match="bias_correction=True requires alpha < 1"):
        RMSprop([p], bias_correction=True, alpha=1.0)


def test_construction_refusals() -> None:
    p, _ = make()
    with pytest.raises(ValueError, match="empty"):
        RMSprop([])
    with pytest.raises(TypeError, match="wrap it in a list"):
        RMSprop(p)
    with pytest.raises(ValueError, match="more than once"):
        RMSprop([p, p])
    with pytest.raises(TypeError, match=r"float32, float64, float16 or ml_dtypes\.bfloat16"):
        RMSprop([p.astype(np.int64)])
    with pytest.raises(ValueError, match="preset must be one of"):
        RMSprop([p], preset="caffe")


def test_functional_refusals_name_the_argument() -> None:
    p, g = make()
    v = np.zeros_like(p)
    with pytest.raises(ValueError, match="momentum_buffer is missing; pass it"):
        rmsprop_step(p, g, v, momentum=0.9)
    with pytest.raises(ValueError, match="grad_avg is missing; pass it"):
        rmsprop_step(p, g, v, centered=True)
    with pytest.raises(TypeError, match=r"^square_avg has dtype float64 but param"):
        rmsprop_step(p, g, v.astype(np.float64))
    with pytest.raises(ValueError, match="step must be >= 1"):
        rmsprop_step(p, g, v, step=0)
    with pytest.raises(ValueError, match=r"param and square_avg share memory|square_avg and param"):
        rmsprop_step(p, g, p)


# ---------------------------------------------------------------- checkpoints


def train(opt: RMSprop, grads: list[list[np.ndarray]]) -> None:
    for gs in grads:
        opt.step(gs)


def checkpoint_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in ((5, 4), (7,))]
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(6)]
    return params, grads


@pytest.mark.parametrize("via", ["state_dict", "pickle"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(via: str) -> None:
    params, grads = checkpoint_case()
    kwargs = {"momentum": 0.9, "centered": True, "bias_correction": True, "alpha": 0.9}
    straight = [p.copy() for p in params]
    train(RMSprop(straight, **kwargs), grads)

    first = [p.copy() for p in params]
    opt = RMSprop(first, **kwargs)
    train(opt, grads[:3])
    if via == "state_dict":
        saved = pickle.loads(pickle.dumps(opt.state_dict()))
        resumed = [p.copy() for p in first]
        opt2 = RMSprop(resumed, lr=0.5)  # hyper-parameters come back from the snapshot
        opt2.load_state_dict(saved)
    else:
        opt2 = pickle.loads(pickle.dumps(opt))
        resumed = [p for g in opt2.param_groups for p in g["params"]]
    train(opt2, grads[3:])
    for a, b in zip(straight, resumed):
        assert a.tobytes() == b.tobytes()


def test_state_dict_layout_is_torchs_and_a_snapshot() -> None:
    params, grads = checkpoint_case()
    opt = RMSprop([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.1}], momentum=0.9)
    train(opt, grads[:1])
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0] and sd["param_groups"][1]["params"] == [1]
    assert sd["param_groups"][1]["lr"] == 0.1
    assert set(sd["state"][0]) == {"step", "square_avg", "momentum_buffer"}
    before = sd["state"][0]["square_avg"].copy()
    train(opt, grads[1:2])
    assert np.array_equal(sd["state"][0]["square_avg"], before)


def test_load_copies_into_live_buffers() -> None:
    params, grads = checkpoint_case()
    opt = RMSprop(params, momentum=0.9)
    train(opt, grads[:2])
    live = opt.state[0]["square_avg"]
    sd = opt.state_dict()
    train(opt, grads[2:3])
    opt.load_state_dict(sd)
    assert opt.state[0]["square_avg"] is live
    assert np.array_equal(live, sd["state"][0]["square_avg"])


def test_savez_round_trip() -> None:
    import io

    params, grads = checkpoint_case()
    opt = RMSprop(params, momentum=0.9)
    train(opt, grads[:2])
    sd = opt.state_dict()
    buf = io.BytesIO()
    np.savez(buf, **{f"{i}/{k}": v for i, e in sd["state"].items() for k, v in e.items()})
    buf.seek(0)
    loaded = np.load(buf)
    state: dict[int, dict[str, Any]] = {}
    for name in loaded.files:
        i, key = name.split("/")
        state.setdefault(int(i), {})[key] = loaded[name]
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    assert opt.state[1]["step"] == 2


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (lambda sd: sd["state"][1].update(square_avg=np.zeros(3, np.float32)), ValueError, "shape"),
        (lambda sd: sd["state"][1].update(square_avg=np.zeros(7, np.float64)), TypeError, "dtype"),
        (lambda sd: sd["state"][1].pop("momentum_buffer"), ValueError, "lacks momentum_buffer"),
        (
            lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])),
            ValueError,
            "param groups",
        ),
        (lambda sd: sd["param_groups"][0].update(params=[0]), ValueError, "has 1 params"),
        (lambda sd: sd["param_groups"][0].update(lr=-1.0), ValueError, "lr"),
        (lambda sd: sd["state"].update({5: sd["state"][0]}), ValueError, "for no param"),
        (lambda sd: sd["state"][0].update(step="3"), ValueError, "step"),
        (lambda sd: sd["state"][0].update(extra=1), ValueError, "unknown keys"),
        (lambda sd: sd["state"][0].update(step=2**64), ValueError, r"step'\] must be in"),
        (lambda sd: sd["state"][0].update(step=2.5), ValueError, "step"),
        (lambda sd: sd["param_groups"].__setitem__(0, [0, 1]), ValueError, "must be a dict"),
        (lambda sd: sd.update(state=list(sd["state"].values())), ValueError, r"\['state'\]"),
    ],
)
def test_load_state_dict_refusals_change_nothing(mutate, exc, match) -> None:
    params, grads = checkpoint_case()
    opt = RMSprop(params, momentum=0.9)
    train(opt, grads[:2])
    sd = opt.state_dict()
    mutate(sd)
    before_state = copy.deepcopy(opt.state)
    before_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    with pytest.raises(exc, match=match):
        opt.load_state_dict(sd)
    for now, then in zip(opt.state, before_state):
        assert now.keys() == then.keys()
        assert all(np.array_equal(now[k], then[k]) for k in now)
    assert before_groups == [
        {k: v for k, v in g.items() if k != "params"} for g in opt.param_groups
    ]


def test_load_accepts_torch_style_float_step_counts() -> None:
    """torch keeps ``step`` in a float tensor; converted to NumPy it is a float or 0-d array."""
    params, grads = checkpoint_case()
    opt = RMSprop(params, momentum=0.9)
    train(opt, grads[:2])
    sd = opt.state_dict()
    sd["state"][0]["step"] = np.array(2.0, np.float32)
    sd["state"][1]["step"] = 2.0
    opt.load_state_dict(sd)
    assert opt.state[0]["step"] == 2 and type(opt.state[0]["step"]) is int
    assert opt.state[1]["step"] == 2


# ---------------------------------------------------------------- control


def test_config_and_controls() -> None:
    cfg = rmsprop.config()
    for key in ("version", "isa", "isas_compiled", "isas_supported", "openmp", "num_threads"):
        assert key in cfg
    assert cfg["version"] == rmsprop.__version__
    assert cfg["isa"] in cfg["isas_supported"]
    assert set(cfg["isas_supported"]) <= set(cfg["isas_compiled"])
    with pytest.raises(ValueError, match="unknown ISA"):
        rmsprop.set_isa("sse9")
    with pytest.raises(ValueError, match="must be >= 1"):
        rmsprop.set_num_threads(0)


def test_repr_lists_hyper_parameters() -> None:
    p, _ = make()
    text = repr(RMSprop([p], lr=0.5))
    assert "lr: 0.5" in text and "Parameter Group 0" in text
