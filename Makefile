# lenssr developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: setup site browser postgres demo test test-all lint format bench weights weights-mix weights-gan edsr-mix-reference specialists-10000 variance-net clean

setup: $(VENV)/.installed

# torch==2.13.0 (CPU build, on disk) first, so the project's torch range installs nothing more.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The static site's browser runtime: ONNX Runtime Web and fflate, pinned by package.json +
# package-lock.json in src/lenssr/site, installed with npm ci and copied into
# src/lenssr/site/vendor/ (ignored by git; `lenssr export-site` copies it into every site).
# Installs Debian's nodejs and npm when missing (needs root).
SITE := src/lenssr/site
site: $(SITE)/vendor/versions.json
$(SITE)/vendor/versions.json: $(SITE)/package.json $(SITE)/package-lock.json $(SITE)/vendor.py | setup
	@if ! command -v npm >/dev/null 2>&1; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; \
	fi
	cd $(SITE) && npm ci --no-audit --no-fund --ignore-scripts
	$(PY) -m lenssr.site.vendor

# Debian's Chromium for the end-to-end browser tests (needs root; skipped when already there).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

# Debian's PostgreSQL server for the shared-study test of lenssr tune (needs root; skipped when
# already there). The test starts its own throw-away cluster; nothing here starts a server.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	fi

demo: setup
	$(BIN)/lenssr simulate --preset default --n 8 --seed 0 --layout deeplense --out demo-out/sim
	$(BIN)/lenssr upscale demo-out/sim/LR -o demo-out/SR --model hybrid
	$(BIN)/lenssr evaluate --model hybrid --data demo-out/sim --out demo-out/eval
	@echo "demo: SR images in demo-out/SR, metrics and figure in demo-out/eval"

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The everyday suite: everything but the tests marked slow.
test: setup site browser lint
	$(BIN)/pytest -q -m "not slow"

# Everything, slow tests included (what .ci/run runs).
test-all: setup site browser postgres lint
	$(BIN)/pytest -q

bench: setup
	for f in benchmarks/bench_*.py; do $(PY) $$f; done

# Reproduce the shipped zoo: simulate data (on first use), train each model under the shared
# protocol (configs/_supervised.yaml), evaluate on the held-out test set and install the weights
# with their model cards. Takes hours on a 2-core CPU; minutes on a GPU.
ZOO ?= srcnn:srcnn edsr:edsr lapsrn:lapsrn esrgan:esrgan hybrid-fast:hybrid hybrid-default:hybrid-tuned
weights: setup data/default-test.h5 weights-mix
	for pair in $(ZOO); do \
	  name=$${pair%%:*}; cfg=$${pair##*:}; \
	  $(BIN)/lenssr train --config configs/$$cfg.yaml && \
	  $(BIN)/lenssr ship runs/$$cfg/best.safetensors --name $$name --test data/default-test.h5 --config configs/$$cfg.yaml || exit 1; \
	done

# The default `hybrid`: the instrument-aware hybrid trained on the survey-mix instrument mixture
# in two stages (configs/hybrid-mix.yaml: 4000 steps of the shared protocol; then
# configs/hybrid-mix-continue.yaml: 6000 more from them), its 1-sigma calibrated on 300 freshly
# rendered survey-mix pairs and refined per pixel by the post-hoc variance network
# (configs/uncertainty/variance-net.yaml), then evaluated on the default test set and installed with its card.
# EDSR-baseline under the same protocol (configs/edsr-mix.yaml) is the speed/accuracy reference
# (not shipped).
weights-mix: setup data/default-test.h5
	$(BIN)/lenssr train --config configs/hybrid-mix.yaml
	$(BIN)/lenssr train --config configs/hybrid-mix-continue.yaml
	$(BIN)/lenssr calibrate runs/hybrid-mix-continue/best.safetensors --data survey-mix --n 300 --seed 7
	$(BIN)/lenssr calibrate runs/hybrid-mix-continue/best.safetensors --variance-net configs/uncertainty/variance-net.yaml
	$(BIN)/lenssr ship runs/hybrid-mix-continue/best.safetensors --name hybrid --test data/default-test.h5 --config configs/hybrid-mix-continue.yaml

# The shipped hybrid's post-hoc variance network alone (lenssr.inference.variance_net), on the
# weights in the package: on a 2-core CPU about 30 min to render 2400 pairs with their
# re-observation bootstrap (first use only; cached in runs/variance-net) and 15 min to train, then
# its coverage on the instrument grid (about 15 min).
variance-net: setup
	$(BIN)/lenssr calibrate src/lenssr/models/weights/hybrid.safetensors --variance-net configs/uncertainty/variance-net.yaml
	$(BIN)/python benchmarks/uncertainty_coverage.py --model hybrid --methods shipped,head --n 20 --n-calib 300 --out docs/uncertainty/shipped

# The accuracy reference of the inference-speed issue: EDSR-baseline trained exactly as the
# shipped hybrid (configs/edsr-mix.yaml + configs/edsr-mix-continue.yaml: same data, instruments,
# patches, batch, loss and 4000 + 6000 steps), then compared with the shipped hybrid on the
# `default` test set and the instrument grid. 10000 EDSR steps: about 5.7 h on a 2-core CPU
# (2.05 s a step, 2026-12-02), minutes on a GPU. Results go to docs/instrument/edsr-reference.
edsr-mix-reference: setup data/default-test.h5
	$(BIN)/lenssr train --config configs/edsr-mix.yaml
	$(BIN)/lenssr train --config configs/edsr-mix-continue.yaml
	$(BIN)/lenssr evaluate --model hybrid,runs/edsr-mix-continue/best.safetensors --data data/default-test.h5 --out docs/instrument/edsr-reference/default
	$(PY) benchmarks/instrument_grid.py --models bicubic,hybrid,edsr-mix=runs/edsr-mix-continue/best.safetensors --n 30 --out docs/instrument/edsr-reference

# The equal-budget specialists of the instrument-aware issue: each of the three specialist
# configs run to 4000 steps, then 6000 more (configs/specialists/<cell>-continue.yaml), as the
# shipped hybrid; then the grid comparison in their six cells. About 3 x 10000 hybrid steps:
# over 4 h on a 2-core CPU. Results go to docs/instrument/specialists/step10000.
SPECIALISTS ?= psf0.12-t1000 psf0.30-t1000 psf0.18-t200
empty :=
SPEC_CELLS = $(subst $(empty) $(empty),$(comma),$(foreach c,$(SPECIALISTS),$(c)-light $(c)-nolight))
comma := ,
specialists-10000: setup
	for c in $(SPECIALISTS); do \
	  $(BIN)/lenssr train --config configs/specialists/$$c.yaml --set budget.steps=4000 && \
	  $(BIN)/lenssr train --config configs/specialists/$$c-continue.yaml || exit 1; \
	done
	$(PY) benchmarks/instrument_grid.py --models bicubic,hybrid --n 30 \
	  --cells $(SPEC_CELLS) \
	  $(foreach c,$(SPECIALISTS),$(foreach l,light nolight,--specialist $(c)-$(l)=runs/specialist-$(c)-continue/best.safetensors)) \
	  --out docs/instrument/specialists/step10000

# The GAN model: denoising pretraining on the LR images, supervised fine-tuning of the tuned
# hybrid from it, GAN fine-tuning, evaluation on the test set and installation as hybrid-gan.
weights-gan: setup data/default-train.h5 data/default-val.h5 data/default-test.h5
	$(BIN)/lenssr pretrain --config configs/pretrain-hybrid.yaml
	$(BIN)/lenssr train --config configs/hybrid-pretrained.yaml
	$(BIN)/lenssr gan --config configs/gan-hybrid.yaml
	$(BIN)/lenssr ship runs/gan/generator.safetensors --name hybrid-gan --test data/default-test.h5 --config configs/gan-hybrid.yaml

# The shared data of the shipped weights (the seeds of configs/_supervised.yaml's data.simulate).
data/default-train.h5: | setup
	$(BIN)/lenssr simulate --preset default --n 20000 --seed 0 --workers 2 --out $@
data/default-val.h5: | setup
	$(BIN)/lenssr simulate --preset default --n 200 --seed 1 --workers 2 --out $@
data/default-test.h5: | setup
	$(BIN)/lenssr simulate --preset default --n 1000 --seed 2 --workers 2 --out $@

clean:
	rm -rf demo-out .pytest_cache .ruff_cache
