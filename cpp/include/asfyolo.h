/* asfyolo.h — the C interface of the asfyolo-rt runtime: cell segmentation of a caller's frame.
 *
 * One header, plain C types, opaque handles. Every call returns an asfyolo_status; on failure the handle's
 * last error (asfyolo_last_error) names the argument or file and the fix. No C++ exception, STL type or
 * abort() crosses this boundary.
 *
 * Thread-safety: a segmenter is used by one thread at a time (it runs its own worker threads inside one
 * call). For several threads, give each its own segmenter, or asfyolo_segmenter_clone() one: clones share
 * the compiled model (no second load) and may be used concurrently. Results are independent objects: read
 * them from any thread, free each once. asfyolo_version() and asfyolo_abi_version() are always safe.
 *
 * Typical use:
 *   asfyolo_options opt; asfyolo_options_init(&opt);
 *   asfyolo_segmenter* seg = NULL;
 *   if (asfyolo_segmenter_open("bundle/", &opt, &seg) != ASFYOLO_OK) { puts(asfyolo_last_error(seg)); }
 *   asfyolo_image img = {pixels, width, height, stride_bytes, ASFYOLO_GRAY16, 0.0, buffer_bytes};
 *   asfyolo_result* res = NULL;
 *   if (asfyolo_segment(seg, &img, &res) == ASFYOLO_OK) { ... asfyolo_result_free(res); }
 *   asfyolo_segmenter_free(seg);
 */
#ifndef ASFYOLO_H
#define ASFYOLO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#if defined(ASFYOLO_BUILDING)
#define ASFYOLO_API __declspec(dllexport)
#else
#define ASFYOLO_API __declspec(dllimport)
#endif
#else
#define ASFYOLO_API __attribute__((visibility("default")))
#endif

/* The ABI this header describes. A program compiled against ABI N runs with a library whose
 * asfyolo_abi_version() is N (same major); structs only grow at their end, guarded by their size field. */
#define ASFYOLO_ABI_VERSION 1
#define ASFYOLO_VERSION_STRING "0.1.0"

typedef enum asfyolo_status {
  ASFYOLO_OK = 0,
  ASFYOLO_ERR_ARGUMENT = 1,     /* a null pointer, size, stride or option out of range */
  ASFYOLO_ERR_FILE = 2,         /* missing or unreadable bundle / model / sidecar */
  ASFYOLO_ERR_MODEL_INFO = 3,   /* model info missing, malformed, or of an unknown major schema version */
  ASFYOLO_ERR_BACKEND = 4,      /* the inference runtime failed (load, compile, infer) */
  ASFYOLO_ERR_UNSUPPORTED = 5,  /* a backend or feature this build does not have (e.g. built without TensorRT) */
  ASFYOLO_ERR_MEMORY = 6,       /* an allocation failed */
  ASFYOLO_ERR_INTERNAL = 7      /* a bug: please report the message */
} asfyolo_status;

typedef enum asfyolo_pixel_format {
  ASFYOLO_GRAY8 = 0,   /* 1 byte per pixel */
  ASFYOLO_GRAY16 = 1,  /* 2 bytes per pixel (host order); scaled to 8 bits between its 0.1 and 99.9 percentiles */
  ASFYOLO_RGB8 = 2,    /* 3 bytes per pixel, R G B */
  ASFYOLO_BGR8 = 3     /* 3 bytes per pixel, B G R */
} asfyolo_pixel_format;

/* A caller-owned frame. stride_bytes: bytes from one row's start to the next (>= width * bytes per pixel).
 * pixel_size_um: micrometres per pixel, 0 when unknown (rescales to the model's training pixel size where
 * the model records one). data_bytes: the buffer's size, so that a short one is an error rather than a read
 * past its end ((height - 1) * stride_bytes + width * bytes per pixel are read). */
typedef struct asfyolo_image {
  const void* data;
  int32_t width;
  int32_t height;
  int64_t stride_bytes;
  asfyolo_pixel_format format;
  double pixel_size_um;
  int64_t data_bytes;  /* bytes readable at data (a short buffer is refused); 0: not checked */
} asfyolo_image;

/* Options of asfyolo_segmenter_open. Fill with asfyolo_options_init(), then change what you need.
 * Negative numbers (and NULL strings) mean "the model's own value". */
typedef struct asfyolo_options {
  uint32_t struct_size;     /* sizeof(asfyolo_options), set by asfyolo_options_init */
  const char* backend;      /* "auto" (from the file), "openvino", "tensorrt"; NULL = auto */
  const char* device;       /* OpenVINO device ("CPU") or "cuda:N"; NULL = the backend's default */
  const char* precision;    /* OpenVINO CPU: "fp32" or "bf16" (native BF16 CPUs only); NULL = as the file says */
  const char* model_file;   /* for a bundle folder: which model file in it (e.g. "model.int8-openvino.xml") */
  int32_t threads;          /* worker threads (pre/post-processing and inference); 0 = all cores */
  int32_t requests;         /* inference requests in flight; 0 = the backend chooses */
  double conf;              /* confidence threshold; < 0: the model's tuned one (else 0.25) */
  double iou;               /* NMS IoU; < 0: the model's */
  int32_t max_det;          /* detections per tile; < 0: the model's */
  double min_visible;       /* drop a cell of which less than this fraction stays visible; < 0: the model's */
  double mask_threshold;    /* mask probability threshold; < 0: the model's */
  int32_t tile_overlap;     /* network px shared by neighbouring tiles; < 0: from the model's object size */
  int32_t tile_size;        /* tile side for models of any input size (multiple of 32); <= 0: each frame's own
                               tile (OpenVINO: per axis the side in 320..1024 that runs the fewest network px,
                               as predict without --img-size; compiled once per shape), 640 (TensorRT) */
  int32_t batch;            /* tiles per inference call for dynamic-batch models; <= 0: 1 (static: the model's) */
  int32_t fit;              /* 1: letterbox the whole image into one tile ("fit"); 0: native-scale tiles */
  int32_t skip_empty;       /* tiles with no content are not run: < 0 (default) or 1 yes, 0 no */
} asfyolo_options;

typedef struct asfyolo_cell {
  uint32_t id;              /* label value in the label map (1..n) */
  int32_t class_id;
  float score;
  float x1, y1, x2, y2;     /* box in image pixels (continuous coordinates) */
  int64_t area_px;          /* visible pixels in the label map */
  double centroid_x, centroid_y;  /* of the visible pixels, pixel centres at +0.5; NaN when none is visible */
  double equivalent_diameter_px;
} asfyolo_cell;

typedef struct asfyolo_timing {
  double read_ms, preprocess_ms, inference_ms, postprocess_ms, total_ms;
} asfyolo_timing;

typedef struct asfyolo_segmenter asfyolo_segmenter;
typedef struct asfyolo_result asfyolo_result;

/* Library version ("0.1.0") and ABI version (ASFYOLO_ABI_VERSION of the build). */
ASFYOLO_API const char* asfyolo_version(void);
ASFYOLO_API int asfyolo_abi_version(void);
/* A short description of this build: backends compiled in, e.g. "openvino" or "openvino,tensorrt". */
ASFYOLO_API const char* asfyolo_build_info(void);

ASFYOLO_API void asfyolo_options_init(asfyolo_options* options);

/* Opens a segmenter from a bundle folder or a model file. A folder (a bundle of `asfyolo-rt export`) gives
 * its model.json (the ModelInfo) and one model file: options->model_file where given (a name in the folder),
 * else model.onnx (the FP32 reference, as Python's Segmenter takes). A file: .onnx or .xml (OpenVINO IR;
 * ModelInfo from its metadata) or .engine/.plan (TensorRT; ModelInfo from the <file>.json sidecar).
 * options may be NULL (defaults). On failure *out is a handle holding only the error (read it with
 * asfyolo_last_error, then free it), or NULL when even that could not be allocated. */
ASFYOLO_API asfyolo_status asfyolo_segmenter_open(const char* path, const asfyolo_options* options,
                                                  asfyolo_segmenter** out);
/* A second segmenter sharing seg's compiled model: use each from its own thread. */
ASFYOLO_API asfyolo_status asfyolo_segmenter_clone(asfyolo_segmenter* seg, asfyolo_segmenter** out);
ASFYOLO_API void asfyolo_segmenter_free(asfyolo_segmenter* seg);
/* The last error of this handle ("" when none); valid until the next call on it. NULL handle: the last
 * error of the calling thread's last failed call without a handle. */
ASFYOLO_API const char* asfyolo_last_error(const asfyolo_segmenter* seg);
/* The effective settings as JSON (model info + overrides + backend), owned by seg. */
ASFYOLO_API const char* asfyolo_segmenter_info(asfyolo_segmenter* seg);

/* Segments one frame. *out gets a new result (free it with asfyolo_result_free). */
ASFYOLO_API asfyolo_status asfyolo_segment(asfyolo_segmenter* seg, const asfyolo_image* image,
                                           asfyolo_result** out);
/* The same with the pixels in CUDA device memory (GPU backends; others: ASFYOLO_ERR_UNSUPPORTED). */
ASFYOLO_API asfyolo_status asfyolo_segment_device(asfyolo_segmenter* seg, const asfyolo_image* image,
                                                  asfyolo_result** out);

ASFYOLO_API void asfyolo_result_free(asfyolo_result* result);
ASFYOLO_API int32_t asfyolo_result_width(const asfyolo_result* result);
ASFYOLO_API int32_t asfyolo_result_height(const asfyolo_result* result);
ASFYOLO_API int64_t asfyolo_result_count(const asfyolo_result* result);
/* The label map, height rows of width uint32 (0 = background, k = cell k), owned by the result. */
ASFYOLO_API const uint32_t* asfyolo_result_labels(const asfyolo_result* result);
/* Copies the label map into a caller buffer of rows stride_bytes apart (>= width * 4). */
ASFYOLO_API asfyolo_status asfyolo_result_copy_labels(const asfyolo_result* result, uint32_t* dst,
                                                      int64_t stride_bytes, int64_t capacity_bytes);
ASFYOLO_API asfyolo_status asfyolo_result_cell(const asfyolo_result* result, int64_t index, asfyolo_cell* out);
/* The outline of cell `index` (0-based): *n_points (x, y) vertices at pixel corners, written into xy
 * (2 * capacity floats) when it is large enough; call with xy = NULL to ask for the count. A cell with no
 * visible pixel has 0 points. */
ASFYOLO_API asfyolo_status asfyolo_result_polygon(const asfyolo_result* result, int64_t index, float* xy,
                                                  int64_t capacity, int64_t* n_points);
ASFYOLO_API asfyolo_status asfyolo_result_timing(const asfyolo_result* result, asfyolo_timing* out);
/* Tiles the frame took (rescue tiles excluded). */
ASFYOLO_API int32_t asfyolo_result_tiles(const asfyolo_result* result);

#ifdef __cplusplus
}
#endif
#endif /* ASFYOLO_H */
