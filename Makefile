# Two entry points that set themselves up on a fresh machine:
#   make demo   - export the shipped DSB2018 model to FP32/FP16/INT8 ONNX and report parity
#   make test   - the test suite (what CI runs through .ci/run), after `make docs`
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-v9
PYTEST_ARGS ?=

.PHONY: venv test test-all demo docs lint typecheck clean cpp

venv: $(STAMP)

# torch is pinned to the CPU build that lies on local disk: a bare `torch` pulls a multi-GB CUDA build.
# napari draws with OpenGL, which Qt's offscreen platform gets through an X display: Xvfb for its tests.
$(STAMP): pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,quant,rtx,openvino,bioimageio,napari,examples,docs,large]'
	command -v Xvfb >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb >/dev/null; } \
		|| echo "note: no Xvfb (apt-get install xvfb): the napari viewer tests will be skipped"
	touch $(STAMP)

test: $(STAMP) docs cpp
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The C runtime (cpp/, docs/how-to/embed-c.md) against the OpenVINO wheel's C++ package; its ctest tests run inside
# pytest (tests/cpp). Ninja, Release, into build/cpp.
CPP_BUILD ?= build/cpp
cpp: $(STAMP)
	cmake -S cpp -B $(CPP_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
		-DOpenVINO_DIR="$$($(PY) -c "import openvino, pathlib; print(pathlib.Path(openvino.__file__).parent / 'cmake')")" >/dev/null
	cmake --build $(CPP_BUILD)

# The shipped DSB2018 model -> FP32 / FP16 / INT8 (TensorRT Q/DQ) / INT8 (CPU) ONNX, calibrated on the
# DSB2018 train split and evaluated against PyTorch on its val split (synthetic cells without the data).
DATA ?= ../shared/datasets/DSB2018
demo: $(STAMP)
	$(VENV)/bin/asfyolo-rt export --fp16 --int8 --calib-images 100 --eval-images 20 $(if $(wildcard $(DATA)),--data $(DATA),) --out runs/demo-bundle

# The documentation site (MkDocs + Material): generated pages and README's results table must match their
# sources (docs/gen/render_results.py --check; without --check it rewrites them), then a build with warnings
# as errors (broken links and anchors fail) into build/site.
docs: $(STAMP)
	$(PY) docs/gen/render_results.py --check
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

lint: $(STAMP)
	$(VENV)/bin/ruff check asfyolo_rt kernels export calib tests bench examples docs/gen

typecheck: $(STAMP)
	$(VENV)/bin/mypy asfyolo_rt/ export/engine

clean:
	rm -rf $(VENV) build *.egg-info
