"""The project modules each stage runs: the transitive import closure of ``stages/<stage>.py``.

A stage's code deps in dvc.yaml must be exactly this closure, so that editing any module a stage
runs reruns that stage, and editing one it does not run reruns nothing (tests/test_stage_deps.py
enforces it). Imports are read with ``ast``, including those inside functions; a package on the
way brings its ``__init__.py``; a helper module beside the stage scripts (``stages/_venv.py``) counts too.

    python tools/stage_deps.py            # every stage's code deps, as dvc.yaml lists them
    python tools/stage_deps.py train      # one stage
    python tools/stage_deps.py --write    # rewrite the code deps in dvc.yaml (other deps and comments kept)
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("charlora",)  # top-level project packages whose modules count as code deps


def module_file(name: str, root: Path = ROOT, local_dir: Path | None = None) -> Path | None:
    """The file of project module ``name`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``), or None.

    ``local_dir``: the importing script's folder, where a top-level name may be a helper module.
    """
    if name.split(".")[0] not in PACKAGES:
        local = local_dir / f"{name}.py" if local_dir is not None and "." not in name else None
        return local if local is not None and local.is_file() else None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path = ROOT, local_dir: Path | None = None) -> set[str]:
    """Dotted names of the project modules ``path`` imports anywhere (``from a import b`` may import module ``a.b``)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*parent, base]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if module_file(name, root, local_dir) is not None}


def with_packages(name: str) -> set[str]:
    """``a.b.c`` and the packages it lives in (``a``, ``a.b``), whose ``__init__.py`` run first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def closure(script: Path, root: Path = ROOT) -> set[Path]:
    """``script`` and every project module it runs, transitively, as paths relative to ``root``."""
    local = script.parent
    seen: set[str] = set()
    todo = [name for imported in imported_modules(script, root, local) for name in with_packages(imported)]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name, root, local) is None:
            continue
        seen.add(name)
        todo.extend(n for imported in imported_modules(module_file(name, root, local), root, local)
                    for n in with_packages(imported))
    return {script.relative_to(root)} | {module_file(name, root, local).relative_to(root) for name in seen}


def stage_scripts(root: Path = ROOT) -> dict[str, Path]:
    """Stage name -> ``stages/<stage>.py`` (``_``-prefixed files are helpers, not stages)."""
    return {path.stem: path for path in sorted((root / "stages").glob("*.py")) if not path.stem.startswith("_")}


def ordered(paths: set[Path]) -> list[str]:
    """The stage scripts first, then the package modules by path."""
    return [p.as_posix() for p in sorted(paths, key=lambda p: (p.parts[0] != "stages", p.parts[0] == "stages"
                                                              and p.stem.startswith("_"), str(p)))]


def is_code_dep(dep: str) -> bool:
    """A dvc.yaml dep that is a project module (the rest are data, models and validation files)."""
    return dep.endswith(".py") and dep.split("/")[0] in ("stages", *PACKAGES)


def rewrite_dvc_yaml(text: str, root: Path = ROOT) -> str:
    """``dvc.yaml`` with each stage's code deps replaced by its closure, after its other deps."""
    scripts, out, stage, in_deps = stage_scripts(root), [], None, False
    for line in text.splitlines(keepends=True):
        if match := re.match(r"^  ([\w-]+):\s*$", line):
            stage = match.group(1)
        if in_deps:
            if dep := re.match(r"^      - (\S+)\s*$", line):
                if not is_code_dep(dep.group(1)):
                    out.append(line)
                continue
            command = re.search(r"stages/([\w-]+)\.py", stages_cmds(text)[stage])
            out.extend(f"      - {path}\n" for path in ordered(closure(scripts[command.group(1)], root)))
            in_deps = False
        in_deps = in_deps or re.match(r"^    deps:\s*$", line) is not None
        out.append(line)
    return "".join(out)


def stages_cmds(text: str) -> dict[str, str]:
    import yaml

    return {name: stage["cmd"] for name, stage in yaml.safe_load(text)["stages"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="*", help="stage names (default: all)")
    parser.add_argument("--write", action="store_true", help="rewrite the code deps of every stage in dvc.yaml")
    args = parser.parse_args()
    if args.write:
        dvc_yaml = ROOT / "dvc.yaml"
        dvc_yaml.write_text(rewrite_dvc_yaml(dvc_yaml.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"stage_deps: code deps rewritten in {dvc_yaml}")
        return
    scripts = stage_scripts()
    for stage in args.stages or scripts:
        print(f"{stage}:")
        for path in ordered(closure(scripts[stage])):
            print(f"      - {path}")


if __name__ == "__main__":
    main()
