"""PyTorch drop-in: ``rmsprop.torch.RMSprop`` steps CPU tensors with the fused rmsprop core.

Change one line of a torch training script::

    import rmsprop.torch
    optimizer = rmsprop.torch.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-8)

Importing this subpackage imports torch; ``import rmsprop`` alone never does.

Example:
    >>> import torch
    >>> import rmsprop.torch
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = rmsprop.torch.RMSprop([w], lr=0.1)
    >>> (w * w).sum().backward()
    >>> ptr = w.data_ptr()
    >>> opt.step()
    >>> bool((w < 1).all()), w.data_ptr() == ptr
    (True, True)
"""

from __future__ import annotations

from ._optimizer import RMSprop

__all__ = ["RMSprop"]
