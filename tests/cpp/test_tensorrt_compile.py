"""The C runtime's TensorRT backend (cpp/src/tensorrt) without a GPU.

- Always (needs only g++): its pure-C++ parts, built from source here: the engine-sidecar reader and the
  compatibility check, run on sidecars written by the Python side (`asfyolo_rt.infer.sidecar.write_sidecar`,
  the reference writer), and the element conversions (half/bfloat16/int -> float, float -> half).
- With public TensorRT headers (`ASFYOLO_TRT_INCLUDE=dir1:dir2`, folders holding NvInferRuntime.h, e.g. the
  include/ of github.com/NVIDIA/TensorRT at a release tag; never committed here): cpp/tools/check_tensorrt.sh
  compiles every file of the backend against each, -Wall -Wextra -Werror.
- With those headers (one of TensorRT >= 10), CUDA runtime headers + libcudart and the TensorRT-RTX runtime
  library of the `rtx` extra: the backend is built through sources.cmake and linked (--no-undefined) against
  the real libtensorrt_rtx, and open_tensorrt runs up to the point where a GPU is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from asfyolo_rt.infer.sidecar import EngineSidecar, sidecar_path, write_sidecar

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "cpp" / "src" / "tensorrt"
SCRIPT = ROOT / "cpp" / "tools" / "check_tensorrt.sh"
DEMO = Path("/work/runs/demo-bundle")
CXX = shutil.which(os.environ.get("CXX", "g++"))

pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++) on PATH")


@pytest.fixture(scope="module")
def record_tool(tmp_path_factory) -> Path:
    """engine_record_test built from source (the sidecar reader, compatibility check and conversions)."""
    exe = tmp_path_factory.mktemp("trt") / "engine_record_test"
    sources = [SRC / "test" / "engine_record_test.cpp", SRC / "engine_record.cpp", SRC.parent / "json.cpp"]
    subprocess.run([str(CXX), "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", *map(str, sources), "-o", str(exe)],
                   check=True)
    return exe


def _check(tool: Path, engine: Path, runtime: str, version: str, cc: str, device: str = "") -> tuple[int, str]:
    args = [str(tool), "check", str(engine), runtime, version, cc] + ([device] if device else [])
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout.strip()


def _write(tmp_path: Path, name: str, **kw: Any) -> Path:
    """An engine file (a few bytes: the check reads only the sidecar) and its sidecar written by Python."""
    base: dict[str, Any] = {"engine": name, "precision": "fp16", "onnx": "model.fp16.onnx", "onnx_sha256": "ab" * 32,
            "tensorrt_version": "10.3.0.30", "compute_capability": "8.7", "device": "Orin"}
    base.update(kw)
    engine = tmp_path / name
    engine.write_bytes(b"plan")
    write_sidecar(engine, EngineSidecar(**base))
    return engine


def test_selftest_conversions_versions_json(record_tool):
    done = subprocess.run([str(record_tool), "selftest"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("ok ") and int(done.stdout.split()[1]) >= 45


# (sidecar fields, machine: runtime, version, compute capability) -> compatible?, words the message must hold
CASES = [
    # standard TensorRT: the same version and GPU architecture (the Jetson it was built on)
    ({}, ("TensorRT", "10.3.0", "8.7"), True, []),
    # another GPU architecture
    ({}, ("TensorRT", "10.3.0", "8.6"), False, ["compute capability 8.7 (Orin)", "is 8.6", "asfyolo-rt build"]),
    # another TensorRT version (JetPack 6 engine on a JetPack 7 runtime)
    ({}, ("TensorRT", "10.13.3", "8.7"), False, ["TensorRT 10.3.0.30", "TensorRT 10.13.3", "rebuild"]),
    # a TensorRT engine on a TensorRT-RTX build of the library
    ({}, ("TensorRT-RTX", "1.7.1", "8.7"), False, ["built with TensorRT,", "--runtime rtx"]),
    # TensorRT-RTX, explicit targets: this GPU's architecture among them or not
    ({"runtime": "TensorRT-RTX", "tensorrt_version": "1.7.1.116", "compute_capability": "", "device": "",
      "targets": ["sm86", "sm89"]}, ("TensorRT-RTX", "1.7.1", "8.9"), True, []),
    ({"runtime": "TensorRT-RTX", "tensorrt_version": "1.7.1.116", "compute_capability": "", "device": "",
      "targets": ["sm86", "sm89"]}, ("TensorRT-RTX", "1.7.1", "12.0"), False, ["sm86, sm89", "sm120", "--arch sm120"]),
    # TensorRT-RTX, default targets: Ampere and newer, not Turing
    ({"runtime": "TensorRT-RTX", "tensorrt_version": "1.7.1.116", "compute_capability": "", "device": ""},
     ("TensorRT-RTX", "1.7.1", "8.6"), True, []),
    ({"runtime": "TensorRT-RTX", "tensorrt_version": "1.7.1.116", "compute_capability": "", "device": ""},
     ("TensorRT-RTX", "1.7.1", "7.5"), False, ["default targets", "is 7.5", "--arch sm75"]),
    ({"runtime": "TensorRT-RTX", "tensorrt_version": "1.7.1.116", "compute_capability": "", "device": ""},
     ("TensorRT-RTX", "1.8.0", "8.9"), False, ["TensorRT-RTX 1.7.1.116", "TensorRT-RTX 1.8.0"]),
]


@pytest.mark.parametrize(("fields", "machine", "compatible", "words"), CASES)
def test_compatibility_of_python_written_sidecars(record_tool, tmp_path, fields, machine, compatible, words):
    engine = _write(tmp_path, "model.fp16.engine", **fields)
    rc, out = _check(record_tool, engine, *machine, "NVIDIA Test GPU")
    assert rc == (0 if compatible else 1), out
    if compatible:
        assert out == "compatible"
    else:
        assert out.startswith("model.fp16.engine ") and "\n" not in out
        for word in words:
            assert word in out, (word, out)


@pytest.mark.parametrize(("text", "words"), [
    ("{not json", ["not valid JSON", "byte"]),
    ('{"format": "asfyolo-rt-engine/9"}', ["format 'asfyolo-rt-engine/9'", "newer asfyolo-rt"]),
    ('{"format": "asfyolo-rt-engine/3", "engine": "m.engine", "precision": "fp16"}', ["missing string key"]),
    ('{"format": "asfyolo-rt-engine/3", "engine": "m.engine", "precision": "fp16", "tensorrt_version": "10.3",'
     ' "compute_capability": "8.7", "runtime": "OpenVINO"}', ["runtime 'OpenVINO'"]),
    ("[1, 2]", ["not a JSON object"]),
    ('{"format": "asfyolo-rt-engine/3", "engine": "m.engine", "precision": "fp16", "tensorrt_version": "10.3",'
     ' "compute_capability": "8.7", "dla_core": 99}', ["dla_core 99"]),
])
def test_bad_sidecars_are_one_line_errors(record_tool, tmp_path, text, words):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(text)
    rc, out = _check(record_tool, engine, "TensorRT", "10.3.0", "8.7")
    assert rc == 2 and out.startswith(str(sidecar_path(engine))) and "\n" not in out
    for word in words:
        assert word in out, (word, out)


def test_missing_sidecar_names_the_build_command(record_tool, tmp_path):
    engine = tmp_path / "lonely.engine"
    engine.write_bytes(b"plan")
    rc, out = _check(record_tool, engine, "TensorRT", "10.3.0", "8.7")
    assert rc == 2 and "lonely.engine.json" in out and "asfyolo-rt build" in out


@pytest.mark.skipif(not DEMO.is_dir(), reason=f"no demo bundle at {DEMO} (`make demo` with --runtime rtx engines)")
def test_demo_bundle_rtx_sidecars(record_tool):
    engines = sorted(DEMO.glob("*.rtx.engine"))
    if not engines:
        pytest.skip(f"no TensorRT-RTX engines in {DEMO}")
    for engine in engines:
        assert _check(record_tool, engine, "TensorRT-RTX", "1.7.1", "8.9")[0] == 0, engine
        rc, out = _check(record_tool, engine, "TensorRT-RTX", "1.7.1", "7.5")
        assert rc == 1 and "--arch sm75" in out


# ---------------------------------------------------------------- with public TensorRT headers

def _trt_dirs() -> list[Path]:
    return [Path(d) for d in os.environ.get("ASFYOLO_TRT_INCLUDE", "").split(os.pathsep) if d]


needs_headers = pytest.mark.skipif(
    not _trt_dirs(), reason="set ASFYOLO_TRT_INCLUDE to TensorRT include folders (e.g. NVIDIA/TensorRT's include/ at "
                            "a release tag; see cpp/tools/check_tensorrt.sh)")


def _cuda_include() -> list[str]:
    """CUDA header folders: ASFYOLO_CUDA_INCLUDE, CUDA_HOME/include, /usr/local/cuda, or the wheels the script
    installs into its default folder (no network is used by the tests themselves)."""
    if os.environ.get("ASFYOLO_CUDA_INCLUDE"):
        return os.environ["ASFYOLO_CUDA_INCLUDE"].split(os.pathsep)
    for d in (os.environ.get("CUDA_HOME", "") + "/include", "/usr/local/cuda/include"):
        if Path(d, "crt", "host_defines.h").is_file():
            return [d]
    wheel = Path(os.environ.get("ASFYOLO_CUDA_WHEEL_DIR", Path(os.environ.get("TMPDIR", "/tmp")) / "asfyolo-cudart"))
    dirs = [wheel / "cuda_runtime/nvidia/cuda_runtime/include", wheel / "cuda_nvcc/nvidia/cuda_nvcc/include"]
    return [str(d) for d in dirs] if all(d.is_dir() for d in dirs) else []


@pytest.mark.slow  # about 5 s per include folder (two compiles of every file with --rtx-shim)
@needs_headers
def test_check_tensorrt_script_compiles_backend():
    cuda = _cuda_include()
    if not cuda:
        pytest.skip("no CUDA runtime headers: set ASFYOLO_CUDA_INCLUDE (the script can pip-install them)")
    env = {**os.environ, "ASFYOLO_CUDA_INCLUDE": os.pathsep.join(cuda)}
    done = subprocess.run(["bash", str(SCRIPT), "--rtx-shim", *map(str, _trt_dirs())], capture_output=True,
                          text=True, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    ok = [line for line in done.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok) >= len(_trt_dirs()) and all("files" in line for line in ok)


def _rtx_library() -> Path | None:
    try:
        import tensorrt_rtx_libs  # the TensorRT-RTX runtime wheel (extra `rtx`)
    except ImportError:
        return None
    lib = Path(tensorrt_rtx_libs.__file__).parent / "libtensorrt_rtx.so.1"
    return lib if lib.is_file() else None


def _cudart(cuda: list[str]) -> Path | None:
    if os.environ.get("ASFYOLO_CUDART_LIBRARY"):
        return Path(os.environ["ASFYOLO_CUDART_LIBRARY"])
    for inc in cuda:
        for lib in sorted(Path(inc).parent.glob("lib*/libcudart.so*")):
            if "static" not in lib.name:
                return lib
    return None


def _major(include: Path) -> int:
    """TensorRT major version of an include folder (0 when unreadable)."""
    header = include / "NvInferVersion.h"
    text = header.read_text() if header.is_file() else ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "#define" and parts[2].isdigit() and parts[1] in (
                "NV_TENSORRT_MAJOR", "TRT_MAJOR_ENTERPRISE"):
            return int(parts[2])
    return 0


@needs_headers
@pytest.mark.skipif(_rtx_library() is None, reason="TensorRT-RTX runtime wheel (tensorrt-rtx-cu12-libs) not installed")
def test_sources_cmake_links_against_real_tensorrt_rtx(tmp_path):
    """sources.cmake finds TensorRT-RTX, the backend links with --no-undefined against the real libtensorrt_rtx,
    and open_tensorrt fails cleanly where no GPU is present (or opens the engine where one is)."""
    new = [d for d in _trt_dirs() if _major(d) >= 10]
    cuda = _cuda_include()
    cudart = _cudart(cuda)
    if not new or not cuda or cudart is None or shutil.which("cmake") is None:
        pytest.skip("needs TensorRT >= 10 headers, CUDA headers + libcudart and cmake")
    rtx_lib = _rtx_library()
    assert rtx_lib is not None
    include = tmp_path / "rtx-include"  # the RTX-style version header over TensorRT 10+ headers (as the script's shim)
    shutil.copytree(new[-1], include)
    (include / "NvInferVersion.h").write_text(
        "#ifndef NV_INFER_VERSION_H\n#define NV_INFER_VERSION_H\n"
        + "".join(f"#define TRT_{k}_RTX {v}\n#define NV_TENSORRT_{k} TRT_{k}_RTX\n"
                  for k, v in (("MAJOR", 1), ("MINOR", 7), ("PATCH", 1), ("BUILD", 116)))
        + "#endif\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.24)
project(trt_link CXX)
set(CMAKE_CXX_STANDARD 17)
include("{SRC / 'sources.cmake'}")
add_library(trt_backend SHARED ${{ASFYOLO_TENSORRT_SOURCES}} "{SRC.parent / 'json.cpp'}")
target_include_directories(trt_backend SYSTEM PRIVATE ${{ASFYOLO_TENSORRT_INCLUDE_DIRS}})
target_include_directories(trt_backend PRIVATE "{SRC.parent}")
target_compile_definitions(trt_backend PRIVATE ${{ASFYOLO_TENSORRT_DEFINITIONS}})
target_compile_options(trt_backend PRIVATE -Wall -Wextra -Werror)
target_link_libraries(trt_backend PRIVATE ${{ASFYOLO_TENSORRT_LIBRARIES}})
target_link_options(trt_backend PRIVATE -Wl,--no-undefined)
add_executable(open_smoke "{SRC / 'test' / 'open_smoke.cpp'}")
target_link_libraries(open_smoke PRIVATE trt_backend)
set_target_properties(open_smoke PROPERTIES BUILD_RPATH "{rtx_lib.parent};{cudart.parent}")
""")
    build = tmp_path / "build"
    cfg = subprocess.run(["cmake", "-S", str(project), "-B", str(build), f"-DTensorRT_INCLUDE_DIR={include}",
                          f"-DTensorRT_LIBRARY={rtx_lib}", f"-DASFYOLO_CUDA_INCLUDE_DIRS={';'.join(cuda)}",
                          f"-DASFYOLO_CUDART_LIBRARY={cudart}"], capture_output=True, text=True, check=False)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    assert "TensorRT-RTX 1.7.1.116" in cfg.stdout
    built = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    smoke = str(build / "open_smoke")
    engine = _write(tmp_path, "model.rtx.engine", runtime="TensorRT-RTX", tensorrt_version="1.7.1.116",
                    compute_capability="", device="")
    out = subprocess.run([smoke, str(engine), "CPU"], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and out.stdout.startswith("device 'CPU': a TensorRT-RTX engine runs on a CUDA GPU")
    out = subprocess.run([smoke, "--host-frame"], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and out.stdout.startswith("image.data: not CUDA device memory")
    out = subprocess.run([smoke, str(tmp_path / "absent.engine")], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "absent.engine does not exist" in out.stdout
    if Path("/dev/nvidia0").exists():  # the shim is not TensorRT-RTX's own headers: do not call into it on a GPU
        return
    # Past the library-version check (the real library's version decodes to the headers' 1.x), the GPU is next:
    out = subprocess.run([smoke, str(engine)], capture_output=True, text=True, check=False)
    assert "compiled against" not in out.stdout
    assert out.returncode == 1 and out.stdout.startswith("no CUDA GPU is usable here")
