# story-shorts-character-lora: `make setup`, then `make test` or `make repro`. `make help` lists all.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DVC := $(VENV)/bin/dvc
STAMP := $(VENV)/.setup-stamp

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast repro exp exp-all plots bench export publish standins clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv with the pinned dependencies (mlx for Metal, CUDA or CPU)

# Re-runs only when a requirements file or the setup script changed, so a second `make setup` takes seconds.
$(STAMP): requirements.txt requirements/*.txt tools/setup_venv.sh pyproject.toml
	VENV=$(VENV) tools/setup_venv.sh
	@touch $@

test: $(STAMP) ## Run the whole test suite (end-to-end tests included: about 10 minutes)
	$(PY) -m pytest

test-fast: $(STAMP) ## Run the unit tests only (not the end-to-end ones marked slow): under a minute
	$(PY) -m pytest -m "not slow"

repro: $(STAMP) ## Run the pipeline (dvc repro): only stages whose inputs changed rerun
	PATH="$(abspath $(VENV))/bin:$$PATH" $(DVC) repro

# `make exp`: the params that differ between runs and the metrics that decide, best score first, in 80-120
# columns. Always shown: EXP_DECIDING; shown when they differ: EXP_IF_CHANGED and changed params; every other
# column (deps, the rest of the metrics) is dropped. `make exp-all` (or `make exp ALL=1`) shows the full table.
PARAM_SECTIONS := character|preprocess|caption|merge|base_model|tiny_model|train|evaluate|export|publish
EXP_DECIDING := best_score|(base_)?identity(_gain)?|best_val_loss|final_loss|seconds_per_step|peak_rss_mb
EXP_IF_CHANGED := base_val_loss|final_val_loss|peak_mlx_memory_mb
EXP_KEEP := Experiment$$|(metrics/[^:]+:)?($(EXP_DECIDING))$$
EXP_DROP := (?!Experiment$$|(params\.yaml:)?($(PARAM_SECTIONS))\.|(metrics/[^:]+:)?($(EXP_DECIDING)|$(EXP_IF_CHANGED))$$).*
EXP_FLAGS := --only-changed --keep '$(EXP_KEEP)' --drop '$(EXP_DROP)' --sort-by metrics/eval.json:best_score --sort-order desc --precision 4

exp: $(STAMP) ## Compare experiments: changed params and deciding metrics (ALL=1: every column)
	$(DVC) exp show --no-pager $(if $(ALL),,$(EXP_FLAGS))

exp-all: $(STAMP) ## Compare experiments: the full dvc exp show table
	$(DVC) exp show --no-pager

plots: $(STAMP) ## Draw loss and metric curves into dvc_plots/index.html
	$(DVC) plots show

bench: $(STAMP) ## Measure pipeline overheads and speeds into metrics/bench.json
	$(PY) tools/bench.py

# LORA=path converts any FLUX.2 Klein LoRA; FORMATS=comfyui,diffusers (default: all but its own), BASE=auto, OUT=exports.
export: $(STAMP) ## Export the LoRA to diffusers/ComfyUI/kohya, verified (LORA=file converts one from elsewhere)
ifdef LORA
	$(PY) stages/export.py --lora "$(LORA)" --base-model "$(or $(BASE),auto)" --out-dir "$(or $(OUT),exports)" $(if $(FORMATS),--formats "$(FORMATS)")
else
	PATH="$(abspath $(VENV))/bin:$$PATH" $(DVC) repro export
endif

publish: $(STAMP) ## Publish the best LoRA to Hugging Face and Runware (needs .env; see README)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(DVC) repro publish
	$(PY) stages/publish.py --push

standins: $(STAMP) ## Run local Hub and Runware stand-ins and print the env to try `make publish` offline
	$(PY) -m tests.standins

clean: ## Remove generated outputs (never data/raw)
	rm -rf data/processed data/captioned data/train data/heldout data/rejected data/cache models/base models/training models/lora models/samples models/export models/published metrics/train metrics/eval dvc_plots
	rm -f metrics/*.json
	@echo "clean: generated outputs removed; data/raw is untouched. Run 'make repro' to rebuild."
