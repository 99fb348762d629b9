# One command each: `make demo` and `make test` create the environment on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.gankit-installed
DEMO_OUT ?= runs/demo

.PHONY: help install test lint pytest docs demo bench clean

help:
	@echo "make demo   - set up, then train dcgan_task1 (32x32) on the built-in toy-faces and write a grid"
	@echo "make test   - set up, then lint, run the test suite and build the docs"
	@echo "make docs   - build the Sphinx HTML docs (warnings are errors)"
	@echo "make bench  - training-throughput benchmark (baseline vs faithful vs fast)"
	@echo "make quality - sample quality over training (SWD, MS-SSIM, FID/KID, P/R), ~30 min on 2 CPU cores"
	@echo "make pictures - the docs' pictures (docs/images/) from short real runs of the report's presets"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev,docs]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint pytest docs

docs: $(STAMP)
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs docs/_build/html

# dcgan_task1 at 32x32, width 32, Adam lr 2e-4 (the DCGAN paper's rate): faces in ~2,000
# steps, a few minutes on 2 CPU cores. The report's own 64x64 / lr 1e-4 configuration is
# `make demo DEMO_SETTINGS=` (on toy-faces its discriminator wins within ~100 steps).
DEMO_SETTINGS ?= --set image_size=32 --set base_channels=32 --set g_lr=2e-4 --set d_lr=2e-4
DEMO_STEPS ?= 2000

demo: $(STAMP)
	$(BIN)/gankit train dcgan_task1 --data toy-faces --max-steps $(DEMO_STEPS) $(DEMO_SETTINGS) \
		--out $(DEMO_OUT) --seed 0 --overwrite

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py --sweep-k 4 --out benchmarks/results.json

# Quality over training of the report's presets (benchmarks/quality.py; CPU configuration:
# 32x32, width 32, bf16, 2 seeds, ~30 min on 2 cores). The report's settings on a GPU:
# `make quality QUALITY_ARGS="--config gpu --out runs/quality-gpu"`.
QUALITY_ARGS ?=
.PHONY: quality
quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py $(QUALITY_ARGS)

# The docs' pictures (benchmarks/pictures.py): dcgan_task1 for 2,000 steps and wgan_task2
# for 4,000 at 32x32, width 32, seed 0, one torch thread; sample grids, loss curves, an
# interpolation and docs/images/pictures.json (machine, commands, wall time, sizes).
PICTURES_ARGS ?=
.PHONY: pictures
pictures: $(STAMP)
	$(BIN)/python benchmarks/pictures.py $(PICTURES_ARGS)

clean:
	rm -rf docs/_build .pytest_cache .ruff_cache runs
