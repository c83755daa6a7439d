# story-shorts-character-lora: `make setup`, then `make test` or `make repro`. `make help` lists all.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DVC := $(VENV)/bin/dvc
STAMP := $(VENV)/.setup-stamp

.DEFAULT_GOAL := help
.PHONY: help setup test repro exp plots bench export publish standins clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv with the pinned dependencies (mlx for Metal, CUDA or CPU)

# Re-runs only when a requirements file or the setup script changed, so a second `make setup` takes seconds.
$(STAMP): requirements.txt requirements/*.txt tools/setup_venv.sh pyproject.toml
	VENV=$(VENV) tools/setup_venv.sh
	@touch $@

test: $(STAMP) ## Run the whole test suite
	$(PY) -m pytest

repro: $(STAMP) ## Run the pipeline (dvc repro): only stages whose inputs changed rerun
	PATH="$(abspath $(VENV))/bin:$$PATH" $(DVC) repro

exp: $(STAMP) ## Compare experiments (dvc exp show)
	$(DVC) exp show

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
