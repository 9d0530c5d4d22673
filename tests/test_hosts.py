"""C and C++ hosts: examples/c and examples/cpp built with CMake against the installed package.

Each example trains the 10 -> 50 -> 1 network of examples/simple_net.py on the same data (this
test writes what the Python example draws) and must print the same losses to 4 decimals. Built
twice: against the CMake package inside the installed wheel (python -m rmsprop --cmakedir) and
against a standalone `cmake --install` of the source tree (when the tests run from it). Skipped
where CMake or a C/C++ compiler is not reachable (the no-compiler wheel check of .ci/wheel).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rmsprop.__main__ import cmake_dir

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LOSS_LINE = re.compile(r"^Epoch \[\d+/10\], Loss: [0-9.]+$", re.M)

pytestmark = [
    pytest.mark.skipif(
        shutil.which("cmake") is None
        or not any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))
        or not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")),
        reason="needs cmake and a C/C++ compiler",
    ),
    # .ci/sanitize preloads the sanitizer runtimes into every child process and builds the
    # package instrumented: its static core cannot link into an uninstrumented example.
    pytest.mark.skipif(
        "asan" in os.environ.get("LD_PRELOAD", ""), reason="sanitizer build (.ci/sanitize)"
    ),
]


def run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def data_and_losses(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The Python example's data as a raw float32 file, and the loss lines it prints."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from simple_net import SimpleNet
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)  # the draws of examples/simple_net.py's main(), in order
    x = rng.standard_normal((100, 10)).astype(np.float32)
    y = rng.standard_normal((100, 1)).astype(np.float32)
    net = SimpleNet(rng)
    path = tmp_path_factory.mktemp("data") / "simple_net.f32"
    path.write_bytes(b"".join(a.astype(np.float32).tobytes() for a in (x, y, *net.params)))
    out = run(sys.executable, EXAMPLES / "simple_net.py")
    losses = LOSS_LINE.findall(out)
    assert len(losses) == 10
    return path, losses


def build_and_check(example: str, package_dir: Path, work: Path, data: tuple[Path, list[str]]):
    build = work / f"build-{example}"
    run(
        "cmake",
        "-S",
        EXAMPLES / example,
        "-B",
        build,
        f"-Drmsprop_DIR={package_dir}",
        "-DCMAKE_BUILD_TYPE=Release",
    )
    run("cmake", "--build", build)
    run("ctest", "--output-on-failure", cwd=build)
    path, expected = data
    out = run(build / "simple_net", path)
    assert LOSS_LINE.findall(out) == expected


@pytest.mark.parametrize("example", ["c", "cpp"])
def test_example_against_the_wheel_package(example, data_and_losses, tmp_path) -> None:
    if not (cmake_dir() / "rmsprop-config.cmake").is_file():
        pytest.skip("this install of rmsprop ships no CMake package")
    build_and_check(example, cmake_dir(), tmp_path, data_and_losses)


@pytest.fixture(scope="module")
def standalone_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cmake --install` of the source tree, built without Python or pybind11."""
    if not (ROOT / "CMakeLists.txt").is_file():
        pytest.skip("not running from the source tree")
    work = tmp_path_factory.mktemp("standalone")
    env_prefix = os.environ.get("RMSPROP_TEST_PREFIX")  # reuse an install to save a build
    if env_prefix:
        return Path(env_prefix)
    run("cmake", "-S", ROOT, "-B", work / "build", "-DRMSPROP_PYTHON=OFF",
        "-DCMAKE_BUILD_TYPE=Release")  # fmt: skip
    run("cmake", "--build", work / "build", "--parallel", "2")
    run("cmake", "--install", work / "build", "--prefix", work / "prefix")
    return work / "prefix"


@pytest.mark.parametrize("example", ["c", "cpp"])
def test_example_against_a_standalone_install(
    example, standalone_install, data_and_losses, tmp_path
) -> None:
    package_dir = next(standalone_install.glob("lib*/cmake/rmsprop"))
    build_and_check(example, package_dir, tmp_path, data_and_losses)


def test_standalone_library_exports_only_the_c_api(standalone_install) -> None:
    if shutil.which("nm") is None:
        pytest.skip("needs nm")
    library = next(standalone_install.glob("lib*/librmsprop.so"))
    symbols = run("nm", "-D", "--defined-only", library).split("\n")
    names = [line.split()[-1] for line in symbols if line.strip()]
    assert names and all(name.startswith("rmsprop_") for name in names), names
    header = (standalone_install / "include" / "rmsprop" / "rmsprop.h").read_text()
    declared = set(re.findall(r"\b(rmsprop_\w+)\(", header))
    assert set(names) == declared
