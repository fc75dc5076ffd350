# The TensorRT / TensorRT-RTX backend, included by cpp/CMakeLists.txt when ASFYOLO_WITH_TENSORRT=ON.
#
# Finds (cpp/cmake/FindTensorRT.cmake) the TensorRT runtime from TensorRT_ROOT, or TensorRT_INCLUDE_DIR +
# TensorRT_LIBRARY; the flavour (standard TensorRT 8.5+/10.x/11.x, or TensorRT-RTX 1.x) follows the headers.
# Finds the CUDA runtime with find_package(CUDAToolkit) (CUDAToolkit_ROOT; JetPack: /usr/local/cuda); without a
# toolkit, set ASFYOLO_CUDA_INCLUDE_DIRS (folders with cuda_runtime_api.h and crt/host_defines.h) and
# ASFYOLO_CUDART_LIBRARY (libcudart.so[.12]) instead, e.g. from the nvidia-cuda-runtime-cu12 and
# nvidia-cuda-nvcc-cu12 wheels.
#
# Sets, for the including CMakeLists:
#   ASFYOLO_TENSORRT_SOURCES       the backend's .cpp files (they use the core's JSON reader, src/json.cpp, which
#                                  must be in the same target)
#   ASFYOLO_TENSORRT_INCLUDE_DIRS  TensorRT and CUDA include folders (add them as SYSTEM: their headers are not
#                                  -Wall -Werror clean on every version)
#   ASFYOLO_TENSORRT_LIBRARIES     the TensorRT runtime library and libcudart (file paths)
#   ASFYOLO_TENSORRT_DEFINITIONS   ASFYOLO_WITH_TENSORRT=1
#   ASFYOLO_TENSORRT_FLAVOR        "TensorRT" or "TensorRT-RTX";  ASFYOLO_TENSORRT_VERSION  e.g. "10.3.0.30"
list(APPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_LIST_DIR}/../../cmake")
find_package(TensorRT REQUIRED)

if(ASFYOLO_CUDA_INCLUDE_DIRS AND ASFYOLO_CUDART_LIBRARY)
  set(_asfyolo_cuda_includes ${ASFYOLO_CUDA_INCLUDE_DIRS})
  set(_asfyolo_cudart "${ASFYOLO_CUDART_LIBRARY}")
else()
  find_package(CUDAToolkit)
  if(NOT CUDAToolkit_FOUND)
    message(FATAL_ERROR "ASFYOLO_WITH_TENSORRT: no CUDA runtime found: set CUDAToolkit_ROOT (e.g. /usr/local/cuda), "
                        "or ASFYOLO_CUDA_INCLUDE_DIRS and ASFYOLO_CUDART_LIBRARY")
  endif()
  set(_asfyolo_cuda_includes ${CUDAToolkit_INCLUDE_DIRS})
  set(_asfyolo_cudart "${CUDA_cudart_LIBRARY}")
endif()

set(ASFYOLO_TENSORRT_SOURCES
  "${CMAKE_CURRENT_LIST_DIR}/trt_open.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/trt_infer.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/engine_record.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/device_frame.cpp")
set(ASFYOLO_TENSORRT_INCLUDE_DIRS "${TensorRT_INCLUDE_DIR}" ${_asfyolo_cuda_includes})
set(ASFYOLO_TENSORRT_LIBRARIES "${TensorRT_LIBRARY}" "${_asfyolo_cudart}")
set(ASFYOLO_TENSORRT_DEFINITIONS ASFYOLO_WITH_TENSORRT=1)
set(ASFYOLO_TENSORRT_FLAVOR "${TensorRT_FLAVOR}")
set(ASFYOLO_TENSORRT_VERSION "${TensorRT_VERSION}")
message(STATUS "asfyolo: TensorRT backend with ${TensorRT_FLAVOR} ${TensorRT_VERSION} (${TensorRT_LIBRARY})")
