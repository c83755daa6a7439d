"""notebooks/pipeline.ipynb and its helpers (charlora/notebook/): committed without outputs, cells that only drive
the pipeline, each section's display (tables as text/html, pictures and plots as image/png, one line when a stage
has not run), the guarded push, and the whole notebook executed headless by `make report` in a copy of the
session's pipeline run."""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml
from PIL import Image

from charlora.notebook import commands, data, experiments, publishing, results, training, views
from tests.conftest import FIXTURE_PARAMS, ROOT, clone_project, copy_project, tool_env

NOTEBOOK = ROOT / "notebooks" / "pipeline.ipynb"
PUBLISH_NAMES = ("HF_TOKEN", "HF_REPO_ID", "RUNWARE_API_KEY", "HF_ENDPOINT", "RUNWARE_URL")
PNG, HTML = "image/png", "text/html"


def code_cells(notebook) -> dict[str, nbformat.NotebookNode]:
    """The notebook's code cells by their tag (each has one: its section)."""
    return {cell.metadata["tags"][0]: cell for cell in notebook.cells if cell.cell_type == "code"}


# --- the committed notebook ---------------------------------------------------------------------------------------

def test_notebook_is_committed_without_outputs_or_execution_counts():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{cell.source!r}: run `make strip`"
    verify = subprocess.run([str(Path(sys.executable).parent / "nbstripout"), "--verify", str(NOTEBOOK)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, f"nbstripout would change the notebook: run `make strip`\n{verify.stdout}"


def test_every_stage_has_a_section_and_cells_only_drive_the_pipeline():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = code_cells(notebook)
    assert len(cells) == sum(cell.cell_type == "code" for cell in notebook.cells), "every code cell has its own tag"
    run = set()
    for tag, cell in cells.items():
        for statement in ast.parse(cell.source).body:
            if isinstance(statement, ast.ImportFrom):  # only `from charlora import notebook as nb`
                assert statement.module == "charlora" and [a.name for a in statement.names] == ["notebook"], tag
            elif isinstance(statement, ast.Assign):  # a setting the user changes: a constant
                ast.literal_eval(statement.value)
            else:  # a call of a helper: nb.<function>(...)
                call = statement.value
                assert isinstance(statement, ast.Expr) and isinstance(call, ast.Call), (tag, ast.dump(statement))
                assert isinstance(call.func, ast.Attribute) and call.func.value.id == "nb", tag
                assert hasattr(__import__("charlora.notebook").notebook, call.func.attr), (tag, call.func.attr)
                if call.func.attr == "repro":
                    run.add(call.args[0].value)
    stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]) - {"base_model"}  # prior runs it
    assert stages <= run, f"stages without a section: {stages - run}"
    assert "PUBLISH = False" in cells["push"].source and "RUN_EXPERIMENT = False" in cells["try-experiment"].source


# --- helpers, on small projects written here ----------------------------------------------------------------------

@pytest.fixture
def shown(monkeypatch):
    """What the helpers display, as MIME bundles (as a kernel would send them)."""
    from IPython.core.formatters import DisplayFormatter

    formatter, bundles = DisplayFormatter(), []
    monkeypatch.setattr(views, "display", lambda *objects: bundles.extend(formatter.format(o)[0] for o in objects))
    return bundles


@pytest.fixture
def empty_project(tmp_path) -> Path:
    """A project folder with the pipeline's dvc.yaml and params, and no outputs."""
    shutil.copyfile(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copyfile(FIXTURE_PARAMS, tmp_path / "params.yaml")
    return tmp_path


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_png(path: Path, size=(40, 30), color=(200, 120, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def mime_types(bundles) -> list[set[str]]:
    return [set(bundle) for bundle in bundles]


SECTIONS = [data.show_preprocess, data.show_captions, data.show_prior, data.show_merge, training.show_train,
            training.show_extract, results.show_evaluate, results.show_export, results.show_shots,
            publishing.show_publish_plan, publishing.show_published]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda f: f.__name__)
def test_a_section_whose_stage_has_not_run_says_so_in_one_line(empty_project, shown, capsys, section):
    section(empty_project)
    out = capsys.readouterr().out
    assert shown == [] and len(out.splitlines()) == 1, out
    if section is results.show_shots and "shots" not in commands.stages(empty_project):
        assert "has no 'shots' stage" in out


def test_repro_of_a_stage_the_project_lacks_is_one_line(empty_project, capsys, monkeypatch):
    monkeypatch.setattr(commands, "stream", lambda *a, **k: pytest.fail("nothing may run"))
    commands.repro("no_such_stage", root=empty_project)
    assert "has no 'no_such_stage' stage" in capsys.readouterr().out


def test_stream_prints_each_line_with_the_venv_first_on_path_and_raises_on_failure(tmp_path):
    lines = []
    script = "import os, shutil, sys; print(shutil.which('dvc')); print('to stderr', file=sys.stderr); sys.exit(3)"
    with pytest.raises(commands.CommandFailed, match="exit status 3"):
        commands.stream([sys.executable, "-c", script], tmp_path, write=lines.append)
    assert lines == [str(Path(sys.executable).parent / "dvc"), "to stderr"]
    assert commands.stream(["echo", "a\rb"], tmp_path, write=lines.append) == "a\nb"


def test_preprocess_shows_raw_beside_processed_and_every_reject_with_its_reason(empty_project, shown):
    write_png(empty_project / "data/raw/hero.png", (300, 200))
    write_png(empty_project / "data/processed/char_001.png", (48, 32))
    write_json(empty_project / "data/processed/manifest.json", [
        {"source": "hero.png", "name": "char_001", "width": 48, "height": 32, "original_width": 300,
         "original_height": 200, "user_caption": None}])
    write_json(empty_project / "metrics/preprocess.json", {
        "raw_files": 3, "accepted": 1, "rejected": 2, "user_captions": 0, "size": 48, "resize": "fit", "warnings": [],
        "rejects": [{"source": "tiny.png", "reason": "too small: 20x20", "quarantined": True},
                    {"source": "escape.png", "reason": "symlink to /etc/x outside data/raw", "quarantined": False}]})
    data.show_preprocess(empty_project)
    assert PNG in shown[0] and HTML in shown[1]
    assert "too small: 20x20" in shown[1][HTML] and "not read, not copied" in shown[1][HTML]


def test_captions_table_has_thumbnails_sources_and_an_edit_becomes_the_user_caption(empty_project, shown):
    write_png(empty_project / "data/processed/char_001.png")
    write_json(empty_project / "data/processed/manifest.json", [{"source": "hero_01.jpg", "name": "char_001"}])
    write_json(empty_project / "data/captioned/captions.json",
               [{"name": "char_001", "source": "florence2", "caption": "brmbl, a fox <on> a hill"}])
    data.show_captions(empty_project)
    sources, pictures = shown
    assert "florence2" in sources[HTML]
    assert '<img src="data:image/png;base64,' in pictures[HTML] and "a fox &lt;on&gt; a hill" in pictures[HTML]
    data.edit_captions({"char_001": "sitting in the snow"}, empty_project, rerun=False)
    assert (empty_project / "data/raw/hero_01.txt").read_text() == "sitting in the snow\n"
    with pytest.raises(KeyError, match="char_009"):
        data.edit_captions({"char_009": "x"}, empty_project, rerun=False)


def test_prior_pictures_are_shown_beside_their_captions(empty_project, shown, capsys):
    folder = empty_project / "data/prior/bramble"
    write_png(empty_project / "data/processed/char_001.png")
    (empty_project / "data/captioned").mkdir(parents=True)
    (empty_project / "data/captioned/char_001.txt").write_text("brmbl, in the snow\n")
    for copy in (1, 2):
        write_png(folder / f"char_001_prior{copy}.png", color=(10 * copy, 90, 90))
        (folder / f"char_001_prior{copy}.txt").write_text("in the snow\n")
    write_json(empty_project / "metrics/prior.json", {"per_image": 2, "pictures": 2, "generated": 2, "cached": 0,
                                                      "steps": 4, "guidance": 4.0, "sources": ["char_001"]})
    data.show_prior(empty_project)
    assert "2 pictures (2 generated" in capsys.readouterr().out
    assert shown[0][HTML].count("data:image/png;base64,") == 3 and "in the snow" in shown[0][HTML]


def test_push_runs_make_publish_only_with_the_flag_and_every_credential(empty_project, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(publishing, "make", lambda target, root: calls.append(target))
    for name in PUBLISH_NAMES:
        monkeypatch.delenv(name, raising=False)
    secret = "hf_secret_value_123"
    (empty_project / ".env").write_text(f"HF_TOKEN={secret}\n")
    publishing.push(False, empty_project)
    publishing.push(True, empty_project)
    out = capsys.readouterr().out
    assert out.count("publishing skipped") == 2 and "PUBLISH is False" in out
    assert "HF_REPO_ID, RUNWARE_API_KEY missing" in out and secret not in out and calls == []
    monkeypatch.setenv("HF_REPO_ID", "someone/bramble")
    monkeypatch.setenv("RUNWARE_API_KEY", "rw_secret_456")
    publishing.push(True, empty_project)
    out = capsys.readouterr().out
    assert calls == ["publish"] and secret not in out and "rw_secret_456" not in out


def test_after_a_push_the_hub_url_air_and_test_images_are_shown(empty_project, shown, capsys):
    image = write_png(empty_project / "models/published/runware_x_v1/test_01.png", (64, 64))
    write_json(empty_project / "metrics/publish.json", {
        "dry_run": False, "character": "bramble", "adapter": {"file": "models/lora/bramble-best.safetensors",
                                                             "sha256": "ab" * 32, "size": 10},
        "hf": {"status": "uploaded", "repo_id": "u/bramble", "version": 1, "url": "https://hub/u/bramble/tree/c0ffee",
               "downloads": {"mflux": "https://hub/u/bramble/resolve/c0ffee/bramble.safetensors"}},
        "runware": {"status": "registered", "air": "runware:u-bramble@1", "payload": {}},
        "inference": {"status": "done", "air": "runware:u-bramble@1",
                      "images": [{"prompt": "brmbl, standing", "seed": 42, "image": str(image.relative_to(empty_project))}]},
        "timings_s": {"hf": 1.5}, "error": None})
    publishing.show_published(empty_project)
    out = capsys.readouterr().out
    assert "https://hub/u/bramble/tree/c0ffee" in out and "runware:u-bramble@1" in out
    assert [PNG in bundle for bundle in shown] == [False, False, True]


def test_experiments_table_keeps_the_deciding_metrics_and_the_params_that_differ():
    def run(rev, name, rank, score, timestamp=None):
        return {"rev": rev, "name": name, "data": {
            "rev": rev, "timestamp": timestamp,
            "params": {"params.yaml": {"data": {"train": {"seed": 42, "lora": {"rank": rank}}}}},
            "metrics": {"metrics/eval.json": {"data": {"best_score": score, "identity": 0.8, "checkpoints": 7}},
                        "metrics/train.json": {"data": {"final_loss": 1.4, "settings": {"rank": rank}}}}}}

    shown = [run("workspace", None, 8, 0.9),
             {**run("1a2b3c4d5e", "main", 16, 0.8, "2026-11-28T07:00:00"),
              "experiments": [{"revs": [run("9f9f9f9f9f", "rank8", 8, 0.9, "2026-11-28T07:10:00")]}]}]
    frame = experiments.experiments_frame(shown)
    assert list(frame.index) == ["workspace", "main", "rank8"]
    assert list(frame.columns) == ["rev", "Created", "best_score", "identity", "final_loss", "train.lora.rank"]
    assert list(frame["rev"]) == ["workspace", "1a2b3c4", "9f9f9f9"] and list(frame["train.lora.rank"]) == [8, 16, 8]
    assert "train.seed" in experiments.experiments_frame(shown, all_columns=True).columns


def test_trying_a_param_without_running_names_the_stages_that_read_it(empty_project, capsys, monkeypatch):
    monkeypatch.setattr(experiments, "dvc", lambda *a, **k: pytest.fail("nothing may run"))
    experiments.try_params({"train.lora.rank": 8, "character.trigger": "zq"}, run=False, root=empty_project)
    out = capsys.readouterr().out
    assert "dvc exp run -S train.lora.rank=8 -S character.trigger=zq" in out
    assert "reruns caption, prior, merge, train, extract, evaluate, publish, shots (" in out and "RUN_EXPERIMENT = True" in out


# --- the whole notebook, executed headless in a copy of the session's pipeline run --------------------------------

def kernel_env(tmp: Path) -> dict[str, str]:
    """The tests' environment without publishing credentials; Jupyter's and IPython's files in ``tmp``."""
    env = {name: value for name, value in tool_env().items() if name not in PUBLISH_NAMES}
    env.update(IPYTHONDIR=str(tmp / "ipython"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), JUPYTER_CONFIG_DIR=str(tmp / "config"))
    return env


@pytest.fixture(scope="module")
def report(tmp_path_factory, default_run):
    """`make report` in a copy of the session's default `dvc repro` run (the micro model): (project, the executed notebook, seconds it took).

    The outputs are there, so each `dvc repro` cell is a no-op. The experiment cell runs for real
    (``RUN_EXPERIMENT = True``) with the value params.yaml already has: `dvc exp run` records an experiment and
    reruns nothing.
    """
    project = clone_project(default_run[0], tmp_path_factory.mktemp("notebook") / "project")
    path = project / "notebooks/pipeline.ipynb"
    notebook = nbformat.read(path, as_version=4)
    cell = code_cells(notebook)["try-experiment"]
    rank = yaml.safe_load((project / "params.yaml").read_text())["train"]["lora"]["rank"]
    source = cell.source.replace('TRY = {"train.lora.rank": 8}', f'TRY = {{"train.lora.rank": {rank}}}')
    cell.source = source.replace("RUN_EXPERIMENT = False", "RUN_EXPERIMENT = True")
    assert cell.source.count(str(rank)) == 1 and "RUN_EXPERIMENT = True" in cell.source
    nbformat.write(notebook, path)
    started = time.perf_counter()
    result = subprocess.run(["make", "-s", "report", f"VENV={ROOT / '.venv'}"], cwd=project, capture_output=True,
                            text=True, env=kernel_env(tmp_path_factory.mktemp("jupyter")), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return project, nbformat.read(project / "reports/pipeline.ipynb", as_version=4), time.perf_counter() - started


def outputs(cell) -> tuple[str, list[set[str]], list[str]]:
    """A cell's printed text, the MIME types of each display, and its HTML."""
    text = "".join(o.text for o in cell.outputs if o.output_type == "stream")
    displays = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
    return text, [set(o.data) for o in displays], [o.data[HTML] for o in displays if HTML in o.data]


def count(types: list[set[str]], mime: str) -> int:
    return sum(mime in t for t in types)


@pytest.mark.slow
def test_make_report_runs_every_cell_and_shows_each_stage(report):
    project, notebook, seconds = report
    print(f"make report: {seconds:.0f} s")
    cells = code_cells(notebook)
    assert all(o.output_type != "error" for cell in cells.values() for o in cell.outputs)
    params = yaml.safe_load((project / "params.yaml").read_text())

    text, types, html = outputs(cells["setup"])
    assert count(types, HTML) == 3 and "Device(" in "".join(html) and params["character"]["trigger"] in "".join(html)
    assert params["base_model"]["name"] in "".join(html) and "dvc status" in text
    for stage in ("preprocess", "caption", "prior", "train", "extract", "evaluate", "export", "publish"):
        assert f"Stage '{stage}' didn't change, skipping" in outputs(cells[f"{stage}-run"])[0], stage  # streamed

    text, types, html = outputs(cells["preprocess"])
    assert count(types, PNG) == 1 and "bramble_beach.jpg" in html[0]
    text, types, html = outputs(cells["caption"])
    assert count(types, HTML) == 2 and html[1].count("data:image/png;base64,") == len(
        json.loads((project / "data/captioned/captions.json").read_text()))  # one thumbnail per captioned picture
    sources = json.loads((project / "metrics/caption.json").read_text())["sources"]
    assert all(source in html[0] for source in sources)
    assert "no caption edits" in outputs(cells["caption-edit"])[0]
    text, types, html = outputs(cells["prior"])
    if json.loads((project / "metrics/prior.json").read_text())["pictures"]:
        assert count(types, HTML) == 1 and "data:image/png;base64," in html[0]
    else:
        assert types == [] and "prior preservation is off" in text
    assert "held out for validation" in outputs(cells["merge"])[0]

    text, types, html = outputs(cells["train"])
    assert count(types, HTML) == 3 and count(types, PNG) == 1 and "learning_rate" in "".join(html)
    text, types, html = outputs(cells["extract"])
    assert count(types, HTML) == 2 and "trigger_word" in html[0] and "training_data_sha256" in html[0]
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    text, types, html = outputs(cells["evaluate"])
    sheets = len(list((project / "models/samples").glob("contact_step*.png")))
    assert sheets >= 1 and count(types, PNG) == 1 + sheets + 1  # plots, contact sheets, comparison
    assert f"best checkpoint: step {evaluation['best_step']}" in text and "val_loss" in html[1] and "identity" in html[1]
    text, types, html = outputs(cells["export"])
    assert "every file verified" in text and "comfyui" in html[0] and "kohya" in html[0]
    text, types, html = outputs(cells["shots"])
    if "shots" in yaml.safe_load((project / "dvc.yaml").read_text())["stages"]:
        assert count(types, PNG) == 1 and count(types, HTML) == 1  # the storyboard and the shots
    else:
        assert types == [] and "has no 'shots' stage" in text

    text, types, html = outputs(cells["publish-plan"])
    assert count(types, HTML) >= 2 and "bramble.safetensors" in html[0]
    text = outputs(cells["push"])[0]
    assert "publishing skipped: PUBLISH is False" in text and "HF_TOKEN" in text
    assert "nothing published yet" in outputs(cells["published"])[0]
    text, types, html = outputs(cells["experiments"])
    assert count(types, HTML) == 1 and "workspace" in html[0] and "best_score" in html[0]
    text, types, html = outputs(cells["try-experiment"])
    assert "Ran experiment(s)" in text and "Running stage" not in text  # an experiment that reran nothing
    before = outputs(cells["experiments"])[2][0]
    assert count(types, HTML) == 1 and html[0].count("<tr>") == before.count("<tr>") + 1  # one row more
    assert yaml.safe_load((project / "params.yaml").read_text()) == params


@pytest.mark.slow
def test_the_report_is_one_self_contained_html_file(report):
    project, notebook, _ = report
    page = (project / "reports/pipeline.html").read_text()
    pictures = sum(o.output_type != "stream" and PNG in o.data for c in code_cells(notebook).values() for o in c.outputs)
    thumbnails = sum(o.data[HTML].count("data:image/png;base64,") for c in code_cells(notebook).values()
                     for o in c.outputs if o.output_type != "stream" and HTML in o.data)
    # Pictures are <img src="data:..."> (the template's own CSS may embed an icon as a background-image).
    assert page.count('src="data:image/png;base64,') == pictures + thumbnails and pictures >= 5
    assert 'src="models/' not in page and 'src="data/' not in page  # no picture is a link to a project file


@pytest.mark.slow
def test_make_notebook_serves_the_notebook_headless(tmp_path):
    project = copy_project(tmp_path / "project")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**kernel_env(tmp_path), "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    server = subprocess.Popen(["make", "-s", "notebook", f"VENV={ROOT / '.venv'}",
                               f"ARGS=--port={port} --ServerApp.token=t0ken --ServerApp.ip=127.0.0.1"],
                              cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/contents/notebooks/pipeline.ipynb?token=t0ken&content=0"
        deadline, answer = time.monotonic() + 120, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
            except OSError:
                time.sleep(1)
        assert answer is not None, server.stdout.read1().decode() if server.poll() is not None else "no answer"
        assert answer["type"] == "notebook" and answer["path"] == "notebooks/pipeline.ipynb"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
