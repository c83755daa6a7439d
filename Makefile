# story-shorts-character-lora: `make setup`, then `make test` or `make repro`. `make help` lists all.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DVC := $(VENV)/bin/dvc
STAMP := $(VENV)/.setup-stamp

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast repro exp exp-all plots bench export publish shots standins notebook report strip micro-model clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv with the pinned dependencies (mlx for Metal, CUDA or CPU)

# Re-runs only when a requirements file or the setup script changed, so a second `make setup` takes seconds.
$(STAMP): requirements.txt requirements/*.txt tools/setup_venv.sh pyproject.toml
	VENV=$(VENV) tools/setup_venv.sh
	@touch $@

# Two workers (pytest-xdist): mlx on a CPU keeps to about one core, and the tests that share the default run or the
# tiny pipeline run stay on one worker each (tests/conftest.py), so each run is made once.
test: $(STAMP) ## Run the whole test suite (end-to-end tests included: 17-21 minutes on 2 CPU cores)
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: $(STAMP) ## Run the unit tests only (not the end-to-end ones marked slow): under a minute
	$(PY) -m pytest -m "not slow"

repro: $(STAMP) ## Run the pipeline (dvc repro): only stages whose inputs changed rerun
	PATH="$(abspath $(VENV))/bin:$$PATH" $(DVC) repro

# `make exp`: two narrow tables from dvc's own options, so that each fits 80-120 columns. The first: the
# params that differ between the runs shown and the metrics that decide (EXP_QUALITY), best score first;
# the second: what training gave and cost (EXP_TRAINING). Every other column (deps, the other metrics and
# params) is dropped. `make exp-all` (or `make exp ALL=1`) shows dvc's full table.
PARAM_SECTIONS := character|preprocess|caption|prior|merge|base_model|tiny_model|train|evaluate|export|publish
EXP_QUALITY := best_score|(base_)?identity(_gain)?|best_val_loss
EXP_TRAINING := final_loss|final_val_loss|seconds_per_step|peak_rss_mb|estimated_peak_gb
EXP_SHOW := $(DVC) exp show --no-pager --sort-by metrics/eval.json:best_score --sort-order desc --precision 4
only_columns = --keep 'Experiment$$|(metrics/[^:]+:)?($(1))$$' --drop '(?!Experiment$$|(metrics/[^:]+:)?($(1))$$$(2)).*'

exp: $(STAMP) ## Compare experiments: changed params and the metrics that decide (ALL=1: every column)
ifdef ALL
	$(DVC) exp show --no-pager
else
	$(EXP_SHOW) --only-changed $(call only_columns,$(EXP_QUALITY),|(params\.yaml:)?($(PARAM_SECTIONS))\.)
	$(EXP_SHOW) $(call only_columns,$(EXP_TRAINING),)
endif

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

# REMOTE=runware renders the same story on Runware with the LoRA `make publish` registered (needs .env).
shots: $(STAMP) ## Render story/shots.yaml with the best LoRA (dvc repro shots; REMOTE=runware: on Runware)
ifeq ($(REMOTE),runware)
	$(PY) stages/shots.py --remote runware
else ifneq ($(REMOTE),)
	@echo "make shots: REMOTE=$(REMOTE) is not known; use REMOTE=runware, or no REMOTE for this machine." >&2; exit 2
else
	PATH="$(abspath $(VENV))/bin:$$PATH" $(DVC) repro shots
endif

standins: $(STAMP) ## Run local Hub and Runware stand-ins and print the env to try `make publish` offline
	$(PY) -m tests.standins

# About 5 hours on 2 CPU cores; resumes after an interruption (checkpoints in build/micro). PHASES=transformer runs one phase.
micro-model: $(STAMP) ## Rebuild the embedded micro FLUX.2 Klein and micro CLIP (models/micro) from their recipe
	$(PY) tools/build_micro_model.py $(if $(PHASES),--phases "$(PHASES)")

# The notebook's kernel is this venv's Python (JupyterLab runs from the venv), so its cells run the venv's dvc.
# ARGS go to jupyter lab: ARGS="--no-browser --port 8890" on a remote machine (then open the printed URL through
# `ssh -L 8890:localhost:8890 host`). Without a display (Linux, no DISPLAY or WAYLAND_DISPLAY) no browser is opened.
NOTEBOOK := notebooks/pipeline.ipynb
HEADLESS := $(if $(and $(filter Linux,$(shell uname -s)),$(if $(DISPLAY)$(WAYLAND_DISPLAY),,1)),--no-browser)
# Jupyter refuses to run as root without --allow-root (containers and CI machines often run as root).
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

notebook: $(STAMP) ## Open notebooks/pipeline.ipynb in JupyterLab (ARGS="--no-browser --port 8890" for a remote machine)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(NOTEBOOK) $(HEADLESS) $(AS_ROOT) $(ARGS)

report: $(STAMP) ## Run the notebook headless: reports/pipeline.html, one file with every picture and plot
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m charlora.notebook.report --notebook $(NOTEBOOK)

strip: $(STAMP) ## Strip outputs and execution counts from the notebook before committing it (nbstripout)
	$(VENV)/bin/nbstripout $(NOTEBOOK)

clean: ## Remove generated outputs (never data/raw)
	rm -rf data/processed data/captioned data/prior data/train data/heldout data/rejected data/cache models/base models/training models/lora models/samples models/export models/published models/shots metrics/train metrics/eval dvc_plots reports
	rm -f metrics/*.json
	@echo "clean: generated outputs removed; data/raw is untouched. Run 'make repro' to rebuild."
