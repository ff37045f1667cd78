# SpikeZIP developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.spikezip-installed

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint format bench demo detection vit sweep compare fashion-mnist study table3 clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv from requirements.lock (only when missing or stale)

# The stamp is newer than the lock and pyproject only after a complete install,
# so an interrupted install is redone and a finished one is skipped instantly.
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

test: install  ## fast test suite (what CI runs)
	WANDB_MODE=disabled $(PY) -m pytest -m "not slow" -q

test-all: install  ## every test, the slow ones too
	WANDB_MODE=disabled $(PY) -m pytest -q

lint: install  ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install  ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: install  ## simulator speed: one step vs one QANN forward, eager and compiled (bench/simulate.py), the demo's whole per-T curve (bench/curve.py); ~15 min
	$(PY) bench/simulate.py
	$(PY) bench/curve.py

demo: install  ## the main job: train.py on MNIST-5k (teacher, PET [8,4,2], SNN) in outputs/
	$(PY) train.py

detection: install  ## the detection demo: task=detection (YOLOv3-tiny, synthetic MNIST-5k canvases), outputs/
	$(PY) train.py task=detection

vit: install fashion-mnist  ## the small ViT on Fashion-MNIST through PET and its exact SNN (a few minutes, CPU), outputs/
	$(PY) train.py experiment=fashion_vit

sweep: install  ## an example ablation: PET's alpha (Table 5c) on MNIST-5k, outputs in multirun/
	$(PY) train.py -m sweep=alpha

compare: install  ## SpikeZIP vs QCFS vs rate coding on MNIST-5k: summary.md and figures in multirun/
	$(PY) train.py -m sweep=compare

fashion-mnist:  ## install Fashion-MNIST offline (Debian/Ubuntu package dataset-fashion-mnist)
	@if test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz; then \
		echo "Fashion-MNIST is installed in /usr/share/datasets/fashion-mnist/"; \
	elif command -v apt-get >/dev/null; then \
		$$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y dataset-fashion-mnist; \
	else \
		echo "no apt-get here: run with data.download=true on a machine with internet" >&2; exit 1; \
	fi

# make study and make table3 train the same teachers: they keep them in one place.
FASHION_TEACHERS ?= multirun/fashion-teachers
STUDY_DIR ?= multirun/study
study: install fashion-mnist  ## the ablation study on Fashion-MNIST (about an hour, CPU): docs/study/
	$(PY) train.py -m experiment=fashion_study sweep=study teacher.cache=$(FASHION_TEACHERS) \
		hydra.sweep.dir=$(STUDY_DIR); \
	status=$$?; $(PY) -m spikezip.study $(STUDY_DIR) --out docs/study \
		--command "make study ($(PY) train.py -m experiment=fashion_study sweep=study)" && exit $$status

TABLE3_DIR ?= multirun/table3
table3: install fashion-mnist  ## Table 3: SpikeZIP vs every rival on Fashion-MNIST (about an hour, CPU): docs/table3/
	$(PY) train.py -m experiment=fashion_table3 sweep=table3 teacher.cache=$(FASHION_TEACHERS) \
		hydra.sweep.dir=$(TABLE3_DIR); \
	status=$$?; $(PY) -m spikezip.table3 $(TABLE3_DIR) --out docs/table3 \
		--command "make table3 ($(PY) train.py -m experiment=fashion_table3 sweep=table3)" && exit $$status

clean:  ## remove caches (keeps .venv)
	rm -rf .pytest_cache .ruff_cache .hypothesis
