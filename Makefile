# cbridge: `make demo`, `make test`, `make bench` work on a fresh machine: each sets up what it
# needs (a .venv with the package and its test tools, the C driver) before it runs.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.cbridge-installed
PYTEST_ARGS ?=

.PHONY: all setup driver demo lab docs test test-c test-py test-asan house bench soak fuzz clean

all: setup

# Debian splits venv and the Python headers out of python3; install them only if they are missing.
$(VPY):
	$(PYTHON) -m venv $(VENV) || { \
	  apt-get update && apt-get install -y python3-venv python3-dev && $(PYTHON) -m venv $(VENV); }

# Everything the build (scikit-build-core + CMake) reads, and the package's files (the editable
# install maps each module to its file): a change reinstalls the package, reusing build/.
BUILD_INPUTS := pyproject.toml CMakeLists.txt c_driver/CMakeLists.txt c_driver/cbridge.pc.in \
  c_driver/cbridgeConfig.cmake.in jupyter-config/cbridge_magics.json \
  $(wildcard cython_wrapper/*) $(wildcard c_driver/include/*.h c_driver/src/*.c c_driver/src/*.h) \
  $(shell find cbridge_magics -name node_modules -prune -o \( -name '*.py' -o -name '*.pyx' \
    -o -name '*.pxd' -o -name '*.h' \) -print) \
  $(wildcard cbridge_magics/scope/js/package*.json cbridge_magics/scope/js/src/*)
BUILD_REQUIRES := "scikit-build-core>=0.10" "cython>=3.0" "cython-cmake>=0.2" "pycparser>=3.0"

# The checkout is installed as users get it, editable: CMake builds the compiled modules,
# libcbridge and the demo driver into build/, and pip puts them in the venv (the driver in
# .venv/bin, the library under the package). The build's requirements are installed first,
# so that rebuilds reuse build/ instead of starting over in a fresh isolated environment.
$(STAMP): $(VPY) $(BUILD_INPUTS)
	command -v pkg-config >/dev/null || { apt-get update && apt-get install -y pkgconf; }
	command -v openssl >/dev/null || { apt-get update && apt-get install -y openssl; }
	command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }
	command -v cmake >/dev/null || { apt-get update && apt-get install -y cmake; }
	command -v npm >/dev/null || { apt-get update && apt-get install -y nodejs npm; }
	command -v dot >/dev/null || { apt-get update && apt-get install -y graphviz; }
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet $(BUILD_REQUIRES)
	$(VPY) -m pip install --quiet --no-build-isolation -e '.[test,demo,data,docs]'
	$(VPY) -m cbridge_magics install-kernel --sys-prefix
	touch $@

driver:
	$(MAKE) --no-print-directory -C c_driver

setup: $(STAMP) driver

# Runs the demo notebooks (server.ipynb, client.ipynb) headless; results in out/.
demo: setup
	$(VPY) -m cbridge_magics demo --out out

# JupyterLab on the demo notebooks with the demo driver served through it (Ctrl-C stops both).
LAB_STAMP := $(VENV)/.cbridge-lab
$(LAB_STAMP): $(STAMP)
	$(VPY) -m pip install --quiet "jupyterlab>=4.4,<5"
	touch $@

lab: setup $(LAB_STAMP)
	$(VPY) -m cbridge_magics.lab

# The documentation site into out/docs/html, warnings as errors; the tutorials are executed.
# (tests/test_docs.py builds it too, into a folder of its own, and checks what it holds.)
docs: setup
	$(VPY) -m sphinx -b html -W --keep-going -q docs out/docs/html

test: house test-c test-py test-asan

# The package's shape: no import cycle among its modules, no module over its size limit
# without a reason at its top (tools/house.py says which).
house: setup
	$(VPY) tools/house.py
	$(VPY) tools/c_layers.py

test-c:
	$(MAKE) -C c_driver test

test-py: setup
	$(VPY) -m pytest $(PYTEST_ARGS)

# The wire tests again, against the driver built with AddressSanitizer and UBSan.
test-asan: setup
	$(MAKE) -C c_driver asan
	CBRIDGE_DRIVER=$(CURDIR)/c_driver/build-asan/cbridge-demo-driver \
	  $(VPY) -m pytest tests/test_driver_wire.py tests/test_driver_demo.py tests/test_last_words.py \
	    tests/test_malformed.py tests/test_bridge.py tests/test_relay.py $(PYTEST_ARGS)

bench: setup
	$(VPY) bench/run.py

# The soak for MINUTES minutes (make test runs a 1-minute one); its report goes to out/soak.txt.
MINUTES ?= 10
soak: setup
	CBRIDGE_SOAK_MINUTES=$(MINUTES) $(VPY) -m pytest tests/test_soak.py -s $(PYTEST_ARGS)

# libFuzzer on both harnesses for FUZZ_SECONDS each (installs clang when it is missing).
FUZZ_SECONDS ?= 60
fuzz:
	$(MAKE) -C c_driver fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

clean:
	$(MAKE) -C c_driver clean
	rm -rf build dist out $(STAMP)
