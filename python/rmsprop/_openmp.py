"""The wait policy of the OpenMP runtime a repaired wheel vendors, set while the core loads.

A source build links the system's ``libgomp.so.1``; torch's wheel asks for ``libgomp.so.1`` too,
so the dynamic loader gives the process one runtime and one thread pool. The manylinux wheel
instead vendors a renamed copy (``rmsprop.libs/libgomp-<hash>.so``) that is loaded beside
torch's: two pools. libgomp's default lets idle workers spin for ~300000 iterations after each
parallel region, so when a loop alternates torch work and our steps each pool's spinners take
the cores the other needs (measured: alternating cost several times the two run apart).

Policy: only for the vendored copy, and only if the user set neither ``OMP_WAIT_POLICY`` nor
``GOMP_SPINCOUNT``, set ``GOMP_SPINCOUNT`` while our extension (and with it that copy, which
reads its environment once, when loaded) is imported, and restore the environment at once, so
torch and everything else see exactly what the user set. The count is 0 (passive: idle workers
sleep at once) unless ``RMSPROP_OMP_SPINCOUNT`` says otherwise (``300000`` is libgomp's own
default). ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set by the user always win.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

#: Spin iterations of the vendored runtime's idle workers before they sleep (0 = passive).
VENDORED_GOMP_SPINCOUNT = "0"
#: Environment variable that overrides VENDORED_GOMP_SPINCOUNT for the vendored runtime only.
SPINCOUNT_VARIABLE = "RMSPROP_OMP_SPINCOUNT"
_USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def vendored_libgomp() -> list[Path]:
    """The libgomp copies auditwheel vendored next to the package (none in a source build)."""
    libs = Path(__file__).resolve().parent.parent / "rmsprop.libs"
    return sorted(libs.glob("libgomp*.so*")) if libs.is_dir() else []


def load_core() -> None:
    """Imports rmsprop._core, loading a vendored libgomp under the policy above."""
    if not vendored_libgomp() or any(name in os.environ for name in _USER_SETTINGS):
        importlib.import_module("rmsprop._core")
        return
    # Import runs under the import lock; the variable exists only for the few milliseconds the
    # vendored runtime's constructor needs to read it.
    os.environ["GOMP_SPINCOUNT"] = os.environ.get(SPINCOUNT_VARIABLE, VENDORED_GOMP_SPINCOUNT)
    try:
        importlib.import_module("rmsprop._core")
    finally:
        del os.environ["GOMP_SPINCOUNT"]
