"""Run the stage with the project's virtual environment when dvc was started outside it.

`dvc repro` runs each stage's ``python stages/<stage>.py`` with whatever ``python`` is first on
PATH. Started as ``.venv/bin/dvc repro`` without the venv activated, that is the system Python,
which lacks the project's packages: then this re-runs the script with ``.venv/bin/python`` (or
``$VENV/bin/python``). Inside the venv it does nothing. Imported first by every stage script.
"""

import os
import sys
from pathlib import Path

try:
    import charlora  # noqa: F401 (only to see whether this interpreter has the project's packages)
except ModuleNotFoundError:
    venv_python = Path(__file__).resolve().parents[1] / os.environ.get("VENV", ".venv") / "bin" / "python"
    if not venv_python.is_file() or os.environ.get("CHARLORA_VENV_REEXEC"):
        raise SystemExit(f"{Path(sys.argv[0]).name}: the project's packages are not installed for {sys.executable}. "
                         "Run `make setup`, then `make repro` (or activate .venv and run `dvc repro`).") from None
    os.environ["CHARLORA_VENV_REEXEC"] = "1"
    os.execv(str(venv_python), [str(venv_python), *sys.argv])
