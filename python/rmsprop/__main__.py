"""Where the wheel's C/C++ package lives, for C and C++ hosts (as ``python -m pybind11``).

Usage:
    python -m rmsprop --cmakedir     # for CMAKE_PREFIX_PATH or -Drmsprop_DIR=
    python -m rmsprop --includedir   # rmsprop/rmsprop.h and rmsprop/rmsprop.hpp
    python -m rmsprop --library      # the C API shared library (for ctypes/cffi)
    python -m rmsprop --version
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def cmake_dir() -> Path:
    """The directory holding ``rmsprop-config.cmake`` inside the installed package.

    Example:
        >>> from rmsprop.__main__ import cmake_dir
        >>> (cmake_dir() / "rmsprop-config.cmake").is_file()
        True
    """
    return _PACKAGE / "lib" / "cmake" / "rmsprop"


def include_dir() -> Path:
    """The directory to put on the include path: it holds ``rmsprop/rmsprop.h``."""
    return _PACKAGE / "include"


def library_path() -> Path:
    """The C API shared library, ``librmsprop.so`` (exports only the functions of rmsprop.h)."""
    return _PACKAGE / "lib" / "librmsprop.so"


def main(argv: list[str] | None = None) -> int:
    """Print the path asked for; exit status 1 if the package was installed without it."""
    parser = argparse.ArgumentParser(prog="python -m rmsprop", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--cmakedir", action="store_true", help="the CMake package directory")
    group.add_argument("--includedir", action="store_true", help="the include directory")
    group.add_argument("--library", action="store_true", help="the C API shared library")
    group.add_argument("--version", action="store_true", help="the package version")
    args = parser.parse_args(argv)
    if args.version:
        from rmsprop import __version__

        print(__version__)
        return 0
    path = cmake_dir() if args.cmakedir else include_dir() if args.includedir else library_path()
    if not path.exists():
        print(f"{path} does not exist: this rmsprop has no C/C++ package", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
