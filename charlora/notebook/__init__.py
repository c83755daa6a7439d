"""Display helpers for ``notebooks/pipeline.ipynb``: the notebook drives the DVC pipeline and shows what each stage
made; it holds no stage logic.

Each step of the notebook is ``nb.repro("<stage>")`` (`dvc repro <stage>`, its output streamed into the cell:
only what changed reruns) and then ``nb.show_<stage>()``: that stage's pictures, tables and plots, read from the
files it wrote. A section whose stage has not run (or that the project does not have yet) says so in one line.

==============  =============================================================================================
module          what it does
==============  =============================================================================================
``commands``    find the project, run `dvc repro` / `dvc exp run` / `make publish` streamed, with the venv's tools
``views``       tables (pandas, ``text/html``), thumbnails, picture sheets and plots (``image/png``)
``overview``    the setup check: mlx device, tools, base model, character and trigger word, key params
``data``        preprocess, caption (and editing captions), prior, merge
``training``    train (settings, cost, loss curve), extract (provenance metadata)
``results``     evaluate (metrics, plots, contact sheets, comparison), export, shots
``publishing``  the dry-run plan, the guarded push (`make publish`), what a push published
``experiments`` `dvc exp show` as a DataFrame, `dvc exp run -S ...`
``report``      `make report`: the notebook executed headless into ``reports/pipeline.html``
==============  =============================================================================================

Every ``show_*`` takes an optional project folder (default: found from the working directory).
"""

from charlora.notebook.commands import CommandFailed, dvc, project_root, repro
from charlora.notebook.data import edit_captions, show_captions, show_merge, show_preprocess, show_prior
from charlora.notebook.experiments import experiments_table, show_experiments, try_params
from charlora.notebook.overview import setup, show_setup
from charlora.notebook.publishing import push, show_publish_plan, show_published
from charlora.notebook.results import show_evaluate, show_export, show_shots
from charlora.notebook.training import show_extract, show_train

__all__ = ["CommandFailed", "dvc", "edit_captions", "experiments_table", "project_root", "push", "repro", "setup",
           "show_captions", "show_evaluate", "show_experiments", "show_export", "show_extract", "show_merge",
           "show_preprocess", "show_prior", "show_publish_plan", "show_published", "show_setup", "show_shots",
           "show_train", "try_params"]
