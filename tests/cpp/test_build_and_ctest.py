"""The C runtime's own tests and packaging, reported by the test run: ctest in build/cpp (units and C ABI with a
fake backend), the same tests plus the fuzz of the image arguments in an AddressSanitizer + UBSan build
(build/cpp-asan, without OpenVINO), and `cmake --install` consumed by a project through find_package(asfyolo)."""

from __future__ import annotations

import os
import re

from cpp_helpers import REPO, cmake_build, run


def _ctest(build, *extra: str) -> str:
    done = run(["ctest", "--test-dir", build, "--output-on-failure", *extra])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout


def test_ctest_passes(native_build):
    out = _ctest(native_build)
    assert re.search(r"100% tests passed, 0 tests failed out of \d+", out)
    assert "core" in out and "fuzz_image" in out


def test_asan_ubsan_fuzz_of_image_arguments():
    """Sanitized build: any read outside a caller's buffer, leak or undefined behaviour fails the run."""
    build = REPO / "build" / "cpp-asan"
    cmake_build(build, "-DCMAKE_BUILD_TYPE=Debug", "-DASFYOLO_WITH_OPENVINO=OFF", "-DASFYOLO_SANITIZE=ON",
                "-DASFYOLO_BUILD_TOOLS=OFF")
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "halt_on_error=1"}
    done = run([build / "tests" / "fuzz_image", "3000", "7"], env=env)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    m = re.search(r"(\d+) calls: (\d+) segmented, (\d+) refused, 0 wrong", done.stdout)
    assert m and int(m.group(2)) > 1000 and int(m.group(3)) > 1000  # both sides of the contract exercised
    done = run([build / "tests" / "test_core"], env=env)
    assert done.returncode == 0 and ", 0 failed" in done.stdout, done.stdout + done.stderr[-4000:]


def test_installed_package_is_found_by_cmake(native_build, tmp_path):
    prefix = tmp_path / "prefix"
    done = run(["cmake", "--install", native_build, "--prefix", prefix])
    assert done.returncode == 0, done.stderr
    assert (prefix / "include" / "asfyolo.h").is_file() and (prefix / "include" / "asfyolo.hpp").is_file()
    assert (prefix / "lib" / "cmake" / "asfyolo" / "asfyoloConfig.cmake").is_file()
    moved = tmp_path / "elsewhere"  # relocatable: the package works from wherever the prefix is moved
    prefix.rename(moved)
    build = tmp_path / "consumer"
    done = run(["cmake", "-S", REPO / "cpp" / "tests" / "consumer", "-B", build, "-G", "Ninja",
                f"-DCMAKE_PREFIX_PATH={moved}"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    done = run(["cmake", "--build", build])
    assert done.returncode == 0, done.stdout[-2000:]
    done = run([build / "consumer", tmp_path / "no-bundle"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no such file or folder" in done.stdout and "openvino" in done.stdout
