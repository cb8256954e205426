# The course's two commands: `make lab` (set up, open JupyterLab) and `make test` (set up, check).
# Everything lives in .venv; it is created when missing or broken and refreshed when
# pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2
NB_CELL_TIMEOUT ?= 600
LAB_ARGS ?=
# Keep TensorFlow's C++ start-up messages out of the notebooks (errors still show).
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: lab-check help setup lab test test-jax test-torch lint strip sync check benchmarks site site-check clean

help:
	@echo "make lab    set up .venv and open the course in JupyterLab"
	@echo "make test   set up .venv, lint, check notebooks, run unit tests and every notebook (quick mode)"
	@echo "make test-jax  every notebook in quick mode on the JAX backend"
	@echo "make test-torch  the same on PyTorch (install it first: .venv/bin/pip install torch)"
	@echo "make sync   regenerate the README table and the notebooks' navigation and Colab cells"
	@echo "make strip  strip outputs and execution counts from the notebooks (tags are kept)"
	@echo "make site   build the course site in build/site/html (notebooks executed in full mode,"
	@echo "            cached; UNET_COURSE_QUICK=1 for quick mode)"
	@echo "make site-check  build the site, then check every page in headless Chromium"
	@echo "make lab-check   Run All in JupyterLab (headless Chromium): the animations show"

setup: $(STAMP)

$(STAMP): pyproject.toml site/lab-overrides.json
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"Python 3.11 or newer is needed; $(PYTHON) is {v.major}.{v.minor}")'
	@$(BIN)/python -c 'import sys' 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m unet_course.real_slide
	@# JupyterLab draws every cell, so matplotlib's to_jshtml animations show after Run All
	@# (its default windowing leaves off-screen animations blank)
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp site/lab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $(STAMP)

SITE_STAMP := $(VENV)/.site-installed

$(SITE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,site]'
	@touch $(SITE_STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --ServerApp.default_url=/lab/tree/notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check unet_course tests benchmarks notebooks site tools conftest.py

check: $(STAMP)
	$(BIN)/python -m tools.course check

test: lint check
	UNET_COURSE_QUICK=1 $(BIN)/python -m pytest -n $(JOBS) --durations=15 --nbmake --nbmake-timeout=$(NB_CELL_TIMEOUT) tests notebooks

# Every notebook on the JAX backend, in quick mode (not part of `make test` or CI: see README).
test-jax: $(STAMP)
	KERAS_BACKEND=jax UNET_COURSE_QUICK=1 $(BIN)/python -m pytest -n $(JOBS) --nbmake --nbmake-timeout=$(NB_CELL_TIMEOUT) notebooks

test-torch: $(STAMP)
	@$(BIN)/python -c 'import torch' 2>/dev/null || { echo "PyTorch is not installed in $(VENV); install it with: $(BIN)/pip install torch (about 3 GB with its CUDA libraries)"; exit 1; }
	KERAS_BACKEND=torch UNET_COURSE_QUICK=1 $(BIN)/python -m pytest -n $(JOBS) --nbmake --nbmake-timeout=$(NB_CELL_TIMEOUT) notebooks

sync: $(STAMP)
	$(BIN)/python -m tools.course sync

strip: $(STAMP)
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

# The site executes the notebooks itself (JOBS at a time, cached in build/site/cache), then runs
# Sphinx; a failing notebook or a Sphinx warning fails it. Full mode unless UNET_COURSE_QUICK=1.
site: $(SITE_STAMP)
	UNET_COURSE_QUICK=$${UNET_COURSE_QUICK:-0} $(BIN)/python site/build_site.py \
		--jobs $(JOBS) --timeout $(NB_CELL_TIMEOUT)

# Needs Chromium (Debian: apt-get install -y chromium); screenshots go to build/site/screenshots.
site-check: site
	$(BIN)/python site/check_site.py

# Needs Chromium too; screenshots go to build/lab-screenshots.
lab-check: $(SITE_STAMP)
	$(BIN)/python site/check_lab.py

benchmarks: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
