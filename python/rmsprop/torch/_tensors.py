"""Zero-copy NumPy views of torch tensors, and the checks a tensor passes before it gets one.

The adapter never copies a param or a state buffer: the core writes through these views into
the tensors' own storage. No math here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..rows import RowGrad

#: The param dtypes the core steps (their state is float32, or float64 for float64 params).
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def describe(index: int, names: Sequence[str | None]) -> str:
    """How errors name a param: its index across all groups, and its name when it has one."""
    name = names[index] if index < len(names) else None
    return f"param {index}" + (f" ({name!r})" if name is not None else "")


_CORE_NAME = re.compile(r"\b(params|grads|state)\[(\d+)\]")


def renamed(exc: Exception, names: Sequence[str | None]) -> Exception:
    """The core's error with each ``params[i]``/``grads[i]`` spelled as the torch user knows it."""

    def spell(match: re.Match[str]) -> str:
        index = int(match.group(2))
        what = {"params": "", "grads": "the gradient of ", "state": "the state of "}
        return what[match.group(1)] + describe(index, names)

    return type(exc)(_CORE_NAME.sub(spell, str(exc)))


def _bfloat16() -> Any:
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes ships with the test environment
        raise ImportError(
            "bfloat16 params need the ml_dtypes package (pip install ml_dtypes): it gives NumPy "
            "the bfloat16 dtype the core updates in place"
        ) from None
    return ml_dtypes.bfloat16


def check_param(param: Any, where: str) -> None:
    """Refuse a tensor the core cannot update in place (SPEC §6), naming it."""
    if not isinstance(param, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor, got {type(param).__name__}")
    if param.device.type != "cpu":
        raise ValueError(
            f"{where} is on device {param.device}; rmsprop.torch.RMSprop steps CPU tensors "
            "only (use torch.optim.RMSprop for other devices)"
        )
    if param.layout != torch.strided:
        raise ValueError(f"{where} has layout {param.layout}; only dense (strided) params work")
    if param.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{where} has dtype {param.dtype}; rmsprop.torch.RMSprop steps float32, float64, "
            "float16 and bfloat16 params"
        )
    if not param.is_contiguous():
        raise ValueError(
            f"{where} is not contiguous; the optimizer updates params in place and never copies "
            "them. Make it contiguous once before building the optimizer "
            "(param.data = param.data.contiguous())"
        )
    if param.is_conj() or param.is_neg():
        raise ValueError(f"{where} is a lazy conjugate/negative view; resolve it first")


def array_of(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy array sharing the tensor's memory (bfloat16 through an int16 view)."""
    data = tensor.detach()
    if data.dtype == torch.bfloat16:
        return data.view(torch.int16).numpy().view(_bfloat16())
    return data.numpy()


def param_view(param: torch.Tensor, where: str) -> np.ndarray:
    check_param(param, where)
    return array_of(param)


def row_grad_of(param: torch.Tensor, grad: torch.Tensor, where: str) -> RowGrad:
    """A row-sparse COO gradient (``nn.Embedding(sparse=True)``) as the core's RowGrad.

    Not coalesced: repeated rows are summed by the core in order of appearance. The index
    and value arrays are views of the gradient's own tensors (RowGrad checks the rest).
    """
    if grad.sparse_dim() != 1 or grad.dim() != param.dim():
        raise ValueError(
            f"the gradient of {where} is sparse in {grad.sparse_dim()} dimensions; only "
            "row-sparse gradients (sparse in the first dimension, as nn.Embedding(sparse=True) "
            "makes) are applied lazily. Pass grad.to_dense() for this one"
        )
    if grad.dtype != param.dtype:
        raise TypeError(
            f"the gradient of {where} has dtype {grad.dtype} but the param has {param.dtype}; "
            "they must match"
        )
    values = grad._values().detach()
    if not values.is_contiguous():
        values = values.contiguous()  # a copy of an input only, as for dense gradients
    return RowGrad(grad._indices()[0].numpy(), array_of(values))


def grad_view(param: torch.Tensor, grad: Any, where: str) -> np.ndarray | RowGrad:
    """The slow path of a gradient's view: everything ``grad.numpy()`` refused, or refuse it.

    Reached only for bfloat16 grads, grads that require grad (``create_graph=True``), sparse
    and invalid ones, so that the common case stays one ``grad.numpy()`` call.
    """
    if not isinstance(grad, torch.Tensor):
        raise TypeError(f"the gradient of {where} is a {type(grad).__name__}, not a tensor")
    if grad.device.type == "cpu" and grad.layout == torch.sparse_coo:
        return row_grad_of(param, grad, where)
    if grad.is_sparse or grad.layout != torch.strided:
        raise ValueError(
            f"the gradient of {where} is sparse ({grad.layout}); rmsprop.torch.RMSprop applies "
            "row-sparse torch.sparse_coo gradients lazily and needs dense gradients otherwise. "
            "Pass grad.to_dense()"
        )
    if grad.device.type != "cpu":
        raise ValueError(f"the gradient of {where} is on device {grad.device}, not the CPU")
    if grad.dtype != param.dtype:
        raise TypeError(
            f"the gradient of {where} has dtype {grad.dtype} but the param has {param.dtype}; "
            "they must match"
        )
    if grad.is_conj() or grad.is_neg():
        grad = grad.resolve_conj().resolve_neg()
    return array_of(grad)


def state_tensor(array: np.ndarray) -> torch.Tensor:
    """The torch tensor users see in ``optimizer.state``: it shares the core buffer's memory.

    The core keeps bfloat16 state as uint16 bit patterns; torch has no uint16 view to bfloat16,
    so the bits go through int16 (same width, same bytes).
    """
    if array.dtype == np.uint16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    if array.dtype in (np.float32, np.float64, np.uint8):
        return torch.from_numpy(array)
    raise TypeError(f"internal: state buffers are float, bfloat16 bits or codes, got {array.dtype}")
