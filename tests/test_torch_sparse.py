"""rmsprop.torch.RMSprop with row-sparse gradients (nn.Embedding(sparse=True)): applied lazily
through rmsprop.RowGrad, bit for bit what the NumPy API does with the same rows."""

from __future__ import annotations

import numpy as np
import pytest

import rmsprop

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rmsprop.torch")


def embedding(seed: int = 0) -> tuple[torch.nn.Embedding, np.ndarray]:
    torch.manual_seed(seed)
    emb = torch.nn.Embedding(20, 7, sparse=True)
    table0 = emb.weight.detach().numpy().copy()
    return emb, table0


@pytest.mark.parametrize(
    "options", [{}, {"momentum": 0.9}, {"centered": True, "weight_decay": 0.1}]
)
def test_sparse_embedding_grad_matches_numpy_row_step(options: dict[str, object]) -> None:
    ids = torch.tensor([3, 17, 3, 0, 18])
    emb, table0 = embedding()
    opt = rt.RMSprop(emb.parameters(), lr=0.05, **options)
    reference = table0.copy()
    ref_opt = rmsprop.RMSprop([reference], lr=0.05, **options)
    for step in range(3):
        emb.zero_grad()
        out = emb(ids + step % 2)
        (out * torch.arange(1.0, 8.0)).sum().backward()
        grad = emb.weight.grad
        assert grad.layout == torch.sparse_coo
        rows = rmsprop.RowGrad(grad._indices()[0].numpy(), grad._values().numpy().copy())
        opt.step()
        ref_opt.step([rows])
        np.testing.assert_array_equal(emb.weight.detach().numpy(), reference)
    touched = set((ids + 0).tolist()) | set((ids + 1).tolist())
    untouched = [r for r in range(20) if r not in touched]
    np.testing.assert_array_equal(emb.weight.detach().numpy()[untouched], table0[untouched])
    assert not np.array_equal(emb.weight.detach().numpy()[sorted(touched)], table0[sorted(touched)])


def test_fully_sparse_grad_is_refused_and_changes_nothing() -> None:
    w = torch.nn.Parameter(torch.ones(4, 3))
    opt = rt.RMSprop([w], lr=0.1)
    w.grad = torch.ones(4, 3).to_sparse()  # sparse in both dimensions: not row-sparse
    with pytest.raises(ValueError, match="row-sparse"):
        opt.step()
    assert torch.equal(w, torch.ones(4, 3)) and len(opt.state) == 0


def test_out_of_range_sparse_rows_are_refused() -> None:
    w = torch.nn.Parameter(torch.ones(4, 3))
    opt = rt.RMSprop([w], lr=0.1)
    w.grad = torch.sparse_coo_tensor(
        torch.tensor([[5]]), torch.ones(1, 3), (4, 3), check_invariants=False
    )
    with pytest.raises(ValueError, match="out of range"):
        opt.step()
    assert torch.equal(w, torch.ones(4, 3))


def test_tensor_hyper_parameters_are_read_as_numbers() -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = rt.RMSprop([w], lr=torch.tensor(0.1), alpha=0.9)
    w.grad = torch.ones(3)
    opt.step()
    ref = np.ones(3, np.float32)
    rmsprop.RMSprop([ref], lr=0.1, alpha=0.9).step([np.ones(3, np.float32)])
    np.testing.assert_array_equal(w.detach().numpy(), ref)
