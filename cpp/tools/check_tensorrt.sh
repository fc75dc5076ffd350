#!/usr/bin/env bash
# Compile-check the TensorRT backend (cpp/src/tensorrt, with cpp/src/backend.hpp) against public TensorRT
# headers, without a GPU and without TensorRT libraries: every .cpp and .hpp of cpp/src/tensorrt goes through
# g++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror (TensorRT and CUDA headers as -isystem).
#
# Usage: cpp/tools/check_tensorrt.sh [--rtx-shim] TRT_INCLUDE_DIR [TRT_INCLUDE_DIR ...]
#        ASFYOLO_TRT_INCLUDE=dir1:dir2 cpp/tools/check_tensorrt.sh
#   TRT_INCLUDE_DIR  a directory holding NvInferRuntime.h and NvInferVersion.h, e.g. the include/ folder of
#                    github.com/NVIDIA/TensorRT at a release tag (never commit those headers here):
#                      git --git-dir=TensorRT.git archive v10.3.0 include | tar -x -C /tmp/trt-10.3
#   --rtx-shim       also compile each directory as TensorRT-RTX would be seen: a shadowing NvInferVersion.h
#                    that defines TensorRT-RTX's TRT_MAJOR_RTX macros (1.7.1) exercises the backend's RTX
#                    branches against that directory's API (directories of TensorRT >= 10 only: TensorRT-RTX
#                    descends from 10.x). TensorRT-RTX's own headers are not public; this checks our code
#                    paths, not their exact signatures.
# CUDA runtime headers: ASFYOLO_CUDA_INCLUDE (may be "dir1:dir2"), else CUDA_HOME/include or
# /usr/local/cuda/include, else the nvidia-cuda-runtime-cu12 and nvidia-cuda-nvcc-cu12 wheels (the latter for
# crt/host_defines.h; about 100 MB together) installed with pip into
# ${ASFYOLO_CUDA_WHEEL_DIR:-${TMPDIR:-/tmp}/asfyolo-cudart} (outside any project environment).
# Exit status: 0 when every file compiled against every directory, 1 otherwise, 2 on bad usage.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../src" && pwd)"
cxx="${CXX:-g++}"
rtx_shim=0
dirs=()
for arg in "$@"; do
  case "$arg" in
    --rtx-shim) rtx_shim=1 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) dirs+=("$arg") ;;
  esac
done
if [ ${#dirs[@]} -eq 0 ] && [ -n "${ASFYOLO_TRT_INCLUDE:-}" ]; then
  IFS=: read -r -a dirs <<< "$ASFYOLO_TRT_INCLUDE"
fi
if [ ${#dirs[@]} -eq 0 ]; then
  echo "check_tensorrt.sh: no TensorRT include directory: pass one (or set ASFYOLO_TRT_INCLUDE)" >&2
  exit 2
fi

# Prints the include directories (one a line) that hold cuda_runtime_api.h and the crt/host_defines.h it
# includes. The runtime wheel lacks crt/, which ships in the nvcc wheel: both are installed for the fallback.
find_cuda_include() {
  if [ -n "${ASFYOLO_CUDA_INCLUDE:-}" ]; then
    tr ':' '\n' <<< "$ASFYOLO_CUDA_INCLUDE"
    return 0
  fi
  for d in "${CUDA_HOME:+$CUDA_HOME/include}" /usr/local/cuda/include; do
    if [ -n "$d" ] && [ -f "$d/cuda_runtime_api.h" ] && [ -f "$d/crt/host_defines.h" ]; then echo "$d"; return 0; fi
  done
  local wheel="${ASFYOLO_CUDA_WHEEL_DIR:-${TMPDIR:-/tmp}/asfyolo-cudart}"
  local py="${PYTHON:-python3}"
  local pkg
  for pkg in cuda_runtime cuda_nvcc; do
    if [ ! -d "$wheel/$pkg/nvidia/$pkg/include" ]; then
      echo "check_tensorrt.sh: pip-installing nvidia-${pkg//_/-}-cu12 (for its headers) into $wheel/$pkg" >&2
      "$py" -m pip install --quiet --no-deps --target "$wheel/$pkg" "nvidia-${pkg//_/-}-cu12" >&2 || return 1
    fi
  done
  echo "$wheel/cuda_runtime/nvidia/cuda_runtime/include"
  echo "$wheel/cuda_nvcc/nvidia/cuda_nvcc/include"
}
cuda_flags=()
while IFS= read -r d; do cuda_flags+=(-isystem "$d"); done < <(find_cuda_include || true)
if [ ${#cuda_flags[@]} -eq 0 ]; then
  echo "check_tensorrt.sh: no CUDA runtime headers: set ASFYOLO_CUDA_INCLUDE to a folder with cuda_runtime_api.h" \
    "and crt/host_defines.h (a CUDA toolkit's include/)" >&2
  exit 2
fi

# "11.1.0.106" from a directory's NvInferVersion.h (TensorRT-RTX: its TRT_*_RTX numbers).
trt_version() {
  printf '#include <NvInferVersion.h>\nVERSION NV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH.NV_TENSORRT_BUILD\n' |
    "$cxx" -E -P -x c++ -I"$1" - 2>/dev/null | grep '^VERSION' | sed 's/^VERSION//; s/ //g'
}

files=("$src/backend.hpp")
while IFS= read -r f; do files+=("$f"); done < <(find "$src/tensorrt" -name '*.cpp' -o -name '*.hpp' | sort)

shim_root="$(mktemp -d)"
trap 'rm -rf "$shim_root"' EXIT

status=0
check() {  # check LABEL EXTRA_INCLUDE... : compile every file; print one line per file that fails
  local label="$1"; shift
  local failed=0
  for f in "${files[@]}"; do
    local unit="$f"
    case "$f" in  # a header is checked on its own, as the only include of a translation unit
      *.hpp) unit="$shim_root/$(basename "$f").cpp"; printf '#include "%s"\n' "$f" > "$unit" ;;
    esac
    if ! "$cxx" -std=c++17 -fsyntax-only -Wall -Wextra -Werror "$@" "${cuda_flags[@]}" -I"$src" \
        "$unit" 2> "$shim_root/err.txt"; then
      echo "FAIL $label: ${f#"$src"/}" >&2
      cat "$shim_root/err.txt" >&2
      failed=1
    fi
  done
  if [ $failed -eq 0 ]; then echo "ok   $label: ${#files[@]} files"; else status=1; fi
}

for dir in "${dirs[@]}"; do
  if [ ! -f "$dir/NvInferRuntime.h" ] || [ ! -f "$dir/NvInferVersion.h" ]; then
    echo "check_tensorrt.sh: $dir has no NvInferRuntime.h / NvInferVersion.h" >&2
    exit 2
  fi
  version="$(trt_version "$dir")"
  check "TensorRT $version ($dir)" -isystem "$dir"
  if [ $rtx_shim -eq 1 ] && [ "${version%%.*}" -lt 10 ]; then
    echo "skip TensorRT-RTX shim over the $version API (TensorRT-RTX 1.x descends from TensorRT 10)"
  elif [ $rtx_shim -eq 1 ]; then
    # A copy of the directory with its version header replaced (the headers include it with quotes, so a
    # header earlier on the search path would not shadow it).
    shim="$shim_root/rtx-$(echo "$version" | tr . _)"
    mkdir -p "$shim"
    cp -R "$dir"/. "$shim"/
    cat > "$shim/NvInferVersion.h" <<'EOF'
// TensorRT-RTX-style version header (shim for check_tensorrt.sh --rtx-shim): TRT_*_RTX macros, 1.7.1.116.
#ifndef NV_INFER_VERSION_H
#define NV_INFER_VERSION_H
#define TRT_MAJOR_RTX 1
#define TRT_MINOR_RTX 7
#define TRT_PATCH_RTX 1
#define TRT_BUILD_RTX 116
#define NV_TENSORRT_MAJOR TRT_MAJOR_RTX
#define NV_TENSORRT_MINOR TRT_MINOR_RTX
#define NV_TENSORRT_PATCH TRT_PATCH_RTX
#define NV_TENSORRT_BUILD TRT_BUILD_RTX
#define NV_TENSORRT_LWS_MAJOR 0
#define NV_TENSORRT_LWS_MINOR 0
#define NV_TENSORRT_LWS_PATCH 0
#define NV_TENSORRT_RELEASE_TYPE_EARLY_ACCESS 0
#define NV_TENSORRT_RELEASE_TYPE_RELEASE_CANDIDATE 1
#define NV_TENSORRT_RELEASE_TYPE_GENERAL_AVAILABILITY 2
#define NV_TENSORRT_RELEASE_TYPE NV_TENSORRT_RELEASE_TYPE_GENERAL_AVAILABILITY
#endif
EOF
    check "TensorRT-RTX shim ($(trt_version "$shim")) over the $version API" -isystem "$shim"
  fi
done
exit $status
