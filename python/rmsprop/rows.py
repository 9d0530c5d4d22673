"""Row-sparse gradients for embedding tables: :class:`RowGrad` and the checks it can make alone.

A step with a RowGrad updates only the rows it names (the "lazy" update of TensorFlow's sparse
RMSProp); the merging of repeated rows and the update itself run in the C++ core
(cpp/src/rows.cpp), which also checks the indices against the param's number of rows before
anything is written. No math here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RowGrad"]

_INT64_MAX = np.iinfo(np.int64).max


def _row_indices(indices: Any) -> np.ndarray:
    """Row indices as a 1-D int64 array; no copy when they already are one."""
    given_array = isinstance(indices, np.ndarray)
    array = indices if given_array else np.asarray(indices)
    if not given_array and array.size == 0 and array.dtype.kind == "f":
        array = array.astype(np.int64)  # np.asarray([]) is float64; an empty list is fine
    kind = array.dtype.kind
    if kind == "b":
        raise TypeError(
            "RowGrad indices are row numbers, got a bool array; for a mask of rows pass "
            "np.flatnonzero(mask)"
        )
    if kind not in "iu":
        raise TypeError(
            f"RowGrad indices must be integers (int64), got dtype {array.dtype}; "
            "convert exact row numbers with .astype(np.int64)"
        )
    if array.ndim != 1:
        hint = " (for torch.sparse_coo indices of shape (1, k) pass indices[0])"
        raise ValueError(
            f"RowGrad indices must be a 1-D array of k row numbers, got shape {array.shape}"
            + (hint if array.ndim == 2 and array.shape[0] == 1 else "")
        )
    if kind == "u" and array.dtype.itemsize == 8 and array.size and array.max() > _INT64_MAX:
        raise ValueError(
            f"RowGrad indices hold {int(array.max())}, beyond any row of a NumPy array"
        )
    rows: np.ndarray = np.ascontiguousarray(array, dtype=np.int64)
    rows = rows.view()
    rows.flags.writeable = False
    return rows


class RowGrad:
    """A row-sparse gradient: ``values[i]`` is the gradient of row ``indices[i]`` of a param.

    Pass it to :meth:`rmsprop.RMSprop.step` (or :func:`rmsprop.functional.rmsprop_step`) in
    place of the dense gradient of a param of shape ``(R, ...)``, e.g. an embedding table.
    Only the named rows of the param and of its state change (the "lazy" update TensorFlow's
    sparse RMSProp makes; rows not named keep their values, and their ``square_avg`` does not
    decay). Repeated indices are summed first, in order of appearance,
    ``((v_a + v_b) + v_c) ...``, in the state precision (float32 for float16/bfloat16 params,
    then rounded once to the param's dtype). The step is then bit for bit the dense step
    whose gradient holds those sums in the named rows, restricted to those rows; every option
    (momentum, centered, presets, weight decay, bias correction, 16-bit params, stochastic
    rounding, grad_scale, skip_if_nonfinite, ``state_dtype="bfloat16"``) acts as in that
    dense step. 8-bit state is refused (ValueError): a block's scale depends on all its 256
    elements, so a row update would re-quantize untouched rows. Cost is proportional to the
    number of indices, not to R.

    Args:
        indices: the k row numbers, a 1-D array (or sequence) of any integer dtype; stored as
            int64. Bools and floats are refused. They are checked against the param's rows
            when the step runs: negative or ``>= R`` indices are refused then.
        values: a C-contiguous array of shape ``(k, *param.shape[1:])`` in the param's dtype
            (checked when the step runs); only read.

    Raises:
        TypeError: indices are not integers, or values is not a floating-point ndarray.
        ValueError: indices are not 1-D, or values does not have one row per index.

    Example:
        >>> import numpy as np
        >>> from rmsprop import RMSprop, RowGrad
        >>> table = np.zeros((1000, 4), dtype=np.float32)
        >>> opt = RMSprop([table], lr=0.1)
        >>> rows = np.array([7, 3, 7])
        >>> opt.step([RowGrad(rows, np.ones((3, 4), dtype=np.float32))])
        >>> np.flatnonzero(table.any(axis=1)).tolist()
        [3, 7]
    """

    __slots__ = ("_indices", "_values")

    def __init__(self, indices: Any, values: np.ndarray) -> None:
        rows = _row_indices(indices)
        if not isinstance(values, np.ndarray):
            raise TypeError(
                f"RowGrad values must be a numpy.ndarray of shape (k, ...), got "
                f"{type(values).__name__}"
            )
        floating = values.dtype.kind == "f" or values.dtype.name == "bfloat16"
        if not floating:
            raise TypeError(
                f"RowGrad values have dtype {values.dtype}; they must have the param's dtype "
                "(float32, float64, float16 or ml_dtypes.bfloat16)"
            )
        if values.ndim < 1 or values.shape[0] != rows.shape[0]:
            raise ValueError(
                f"RowGrad values have shape {values.shape} for {rows.shape[0]} indices; they "
                "need one row per index: shape (k, *param.shape[1:])"
            )
        view = values.view()
        view.flags.writeable = False
        self._indices = rows
        self._values = view

    @property
    def indices(self) -> np.ndarray:
        """The row numbers, a read-only 1-D int64 array of length k."""
        return self._indices

    @property
    def values(self) -> np.ndarray:
        """The gradient rows, a read-only view of the array given, shape ``(k, ...)``."""
        return self._values

    def __len__(self) -> int:
        return int(self._indices.shape[0])

    def __repr__(self) -> str:
        return (
            f"RowGrad(k={len(self)}, row_shape={self._values.shape[1:]}, "
            f"dtype={self._values.dtype})"
        )
