# cbridge: `make demo`, `make test`, `make bench` work on a fresh machine: each sets up what it
# needs (a .venv with the package and its test tools, the C driver) before it runs.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.cbridge-installed
DRIVER := c_driver/build/cbridge-demo-driver
PYTEST_ARGS ?=

.PHONY: all setup driver demo lab test test-c test-py test-asan house bench soak fuzz clean

all: setup

# Debian splits venv and the Python headers out of python3; install them only if they are missing.
$(VPY):
	$(PYTHON) -m venv $(VENV) || { \
	  apt-get update && apt-get install -y python3-venv python3-dev && $(PYTHON) -m venv $(VENV); }

# Everything that goes into the compiled modules: the Cython sources and headers, libcbridge's
# framing, and the code generator that writes the demo's classes.
BUILD_INPUTS := pyproject.toml setup.py \
  $(wildcard cython_wrapper/*.py cython_wrapper/*.pyx cython_wrapper/*.pxd) \
  $(wildcard c_driver/include/*.h) c_driver/src/frame.c c_driver/src/cb_internal.h \
  $(wildcard cbridge_magics/cstruct/*.py cbridge_magics/cstruct/*.pyx \
             cbridge_magics/cstruct/*.pxd cbridge_magics/cstruct/*.h)

$(STAMP): $(VPY) $(BUILD_INPUTS)
	command -v pkg-config >/dev/null || { apt-get update && apt-get install -y pkgconf; }
	command -v openssl >/dev/null || { apt-get update && apt-get install -y openssl; }
	command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]'
	# an editable install skips data files: put the extension's Jupyter Server entry in place
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	test -f $(VENV)/etc/jupyter/jupyter_server_config.d/cbridge_magics.json || \
	  cp jupyter-config/cbridge_magics.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	$(VPY) -m cbridge_magics install-kernel --sys-prefix
	touch $@

driver:
	$(MAKE) -C c_driver

setup: $(STAMP) driver

# Runs notebooks/server.ipynb and notebooks/client.ipynb headless; results in out/.
demo: setup
	$(VPY) -m cbridge_magics.demo --driver $(DRIVER) --out out

# JupyterLab on notebooks/ with the demo driver served through it (Ctrl-C stops both).
LAB_STAMP := $(VENV)/.cbridge-lab
$(LAB_STAMP): $(STAMP)
	$(VPY) -m pip install --quiet "jupyterlab>=4.4,<5"
	touch $@

lab: setup $(LAB_STAMP)
	$(VPY) -m cbridge_magics.lab --driver $(DRIVER)

test: house test-c test-py test-asan

# The package's shape: no import cycle among its modules, no module over its size limit
# without a reason at its top (tools/house.py says which).
house: setup
	$(VPY) tools/house.py

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
	rm -rf build out $(STAMP) cython_wrapper/*.c cython_wrapper/_demo_messages.pyx
	find cbridge_magics \( -name '*.so' -o -name '*.c' \) -delete
