# FindTensorRT: standard TensorRT (libnvinfer) or TensorRT-RTX (libtensorrt_rtx), runtime library only.
#
# Hints (cache or -D):
#   TensorRT_ROOT         an install prefix holding include/ and lib/ (a TensorRT or TensorRT-RTX tarball, the
#                         prefix of a pip wheel's libs); JetPack's system locations are searched by default
#                         (/usr/include/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu)
#   TensorRT_INCLUDE_DIR  the folder with NvInferRuntime.h and NvInferVersion.h
#   TensorRT_LIBRARY      the runtime library file itself (libnvinfer.so[.10], libtensorrt_rtx.so[.1], nvinfer_10.lib)
# The flavour follows the headers: TensorRT-RTX's NvInferVersion.h defines TRT_MAJOR_RTX.
#
# Results:
#   TensorRT_FOUND, TensorRT_INCLUDE_DIR, TensorRT_LIBRARY, TensorRT_VERSION ("10.3.0.30" / "1.7.1.116"),
#   TensorRT_FLAVOR ("TensorRT" or "TensorRT-RTX"), and the imported target TensorRT::Runtime.

find_path(TensorRT_INCLUDE_DIR NAMES NvInferRuntime.h
  HINTS ${TensorRT_ROOT} ENV TensorRT_ROOT
  PATH_SUFFIXES include include/tensorrt)

set(TensorRT_VERSION "")
set(TensorRT_FLAVOR "")
if(TensorRT_INCLUDE_DIR AND EXISTS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
  file(STRINGS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" _trt_version_lines
       REGEX "^#define[ \t]+(TRT_[A-Z]+_(RTX|ENTERPRISE)|NV_TENSORRT_(MAJOR|MINOR|PATCH|BUILD))[ \t]+[0-9]+")
  set(TensorRT_FLAVOR "TensorRT")
  foreach(_line IN LISTS _trt_version_lines)
    if(_line MATCHES "TRT_MAJOR_RTX")
      set(TensorRT_FLAVOR "TensorRT-RTX")
    endif()
  endforeach()
  foreach(_part MAJOR MINOR PATCH BUILD)
    set(_trt_${_part} "")
    foreach(_line IN LISTS _trt_version_lines)
      # TensorRT <= 10.14: NV_TENSORRT_MAJOR 10; 10.15+: TRT_MAJOR_ENTERPRISE 11; TensorRT-RTX: TRT_MAJOR_RTX 1.
      if(_line MATCHES "(NV_TENSORRT_${_part}|TRT_${_part}_RTX|TRT_${_part}_ENTERPRISE)[ \t]+([0-9]+)")
        set(_trt_${_part} "${CMAKE_MATCH_2}")
      endif()
    endforeach()
  endforeach()
  set(TensorRT_VERSION "${_trt_MAJOR}.${_trt_MINOR}.${_trt_PATCH}.${_trt_BUILD}")
endif()

if(TensorRT_FLAVOR STREQUAL "TensorRT-RTX")
  set(_trt_names tensorrt_rtx "tensorrt_rtx_${_trt_MAJOR}_${_trt_MINOR}" "libtensorrt_rtx.so.${_trt_MAJOR}")
else()
  set(_trt_names nvinfer "nvinfer_${_trt_MAJOR}" "libnvinfer.so.${_trt_MAJOR}")
endif()
find_library(TensorRT_LIBRARY NAMES ${_trt_names}
  HINTS ${TensorRT_ROOT} ENV TensorRT_ROOT
  PATH_SUFFIXES lib lib64 lib/x64 tensorrt_libs tensorrt_rtx_libs)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT
  REQUIRED_VARS TensorRT_LIBRARY TensorRT_INCLUDE_DIR
  VERSION_VAR TensorRT_VERSION
  REASON_FAILURE_MESSAGE
    "set TensorRT_ROOT to a TensorRT or TensorRT-RTX install (include/, lib/), or TensorRT_INCLUDE_DIR + TensorRT_LIBRARY")

if(TensorRT_FOUND AND NOT TARGET TensorRT::Runtime)
  add_library(TensorRT::Runtime UNKNOWN IMPORTED)
  set_target_properties(TensorRT::Runtime PROPERTIES
    IMPORTED_LOCATION "${TensorRT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}")
endif()
mark_as_advanced(TensorRT_INCLUDE_DIR TensorRT_LIBRARY)
