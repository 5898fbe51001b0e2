# make demo: fresh machine → .venv, dependencies, Fashion-MNIST, trains the fmnist93 recipe (≥ 93 % in < 2 min), prints test accuracy
#   (again: the previous runs/demo is replaced)
# make test: fresh machine → .venv if missing, ruff, the whole test suite on TEST_WORKERS cores (default 2)
# make test-fast: the same without the tests marked slow (over 20 s, or a forward over 1 GMAC)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
FMNIST_DIR := /usr/share/datasets/fashion-mnist
CGAL_DATA := /usr/share/doc/libcgal-dev/data.tar.gz
SWORD_MODS := /usr/share/sword/mods.d
# The tests run in TEST_WORKERS processes (pytest-xdist), one core each; worksteal rebalances the long tests.
TEST_WORKERS ?= 2
PYTEST_WORKERS := -n $(TEST_WORKERS) --dist worksteal

.PHONY: demo test test-fast lint install data clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data:
	@if [ -e $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] || [ -n "$$VISIONZOO_DATA" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
	  echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'," \
	       "or set VISIONZOO_DATA / pass --data-dir to a folder with its IDX files (--download fetches them)"; \
	  exit 2; \
	fi
	@if [ -e $(CGAL_DATA) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's libcgal-demo (meshes for the renders data set)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcgal-demo >/dev/null; \
	else \
	  echo "note: libcgal-demo is missing; the renders data set uses its procedural shapes only" \
	       "(run 'sudo apt-get install libcgal-demo' to add CGAL's animal meshes)"; \
	fi
	@if [ -e $(SWORD_MODS)/engKJV2006eb.conf ] && [ -e $(SWORD_MODS)/spaRV1909eb.conf ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's sword-text-kjv and sword-text-sparv (the kjv and bible-en-es text data sets)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sword-text-kjv sword-text-sparv >/dev/null; \
	else \
	  echo "note: the SWORD Bibles are missing; the kjv and bible-en-es data sets need them" \
	       "(run 'sudo apt-get install sword-text-kjv sword-text-sparv', or put the modules under --data-dir/sword)"; \
	fi

demo: install data
	$(PY) -m visionzoo train --recipe fmnist93 --out runs/demo --overwrite

lint: install
	$(PY) -m ruff check src tests benchmarks

test: lint data
	$(PY) -m pytest -q $(PYTEST_WORKERS)

test-fast: lint data
	$(PY) -m pytest -q $(PYTEST_WORKERS) -m "not slow"

clean:
	rm -rf runs .pytest_cache
