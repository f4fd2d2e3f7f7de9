"""The documentation's code: every Python block in README.md and docs/*.md compiles and passes ruff, and
every file the docs include (``literalinclude``, ``include``, figures) exists.

Sphinx (``scripts/docs``, run by ``scripts/test`` with ``-W -n``) fails on a missing include too; this
test says which one without a docs build. Blocks are snippets, not modules: the few ruff rules a
snippet cannot follow are listed in ``SNIPPET_IGNORE``; everything else follows the project's ruff
configuration.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
# Rules a snippet cannot follow: names defined by an earlier block (F821), imports shown for the reader
# (F401), top-level ``await`` in an async example (F704), a loop whose body is left to the reader as ``...``
# (B007), a suppression comment the reader's whole file needs but the snippet alone does not (RUF100), and the
# import order (I001): in a user's DAG ``airflow_monid`` is a third-party package, in this repository it
# is first-party, and snippets are written for the user.
SNIPPET_IGNORE = "F821,F401,F704,B007,RUF100,I001"


def blocks(page: Path) -> list[tuple[int, str, list[str]]]:
    """(first line, info string, lines) of each fenced block of a Markdown page, nested fences included."""
    found: list[tuple[int, str, list[str]]] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m["fence"], m["info"].strip(), i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][len(m["indent"]) :])
            i += 1
        found.append((start, info, body))
        i += 1
    return found


def python_blocks() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for line, info, body in blocks(page):
            if info in ("python", "py", "{code-block} python", "{code} python"):
                code = "\n".join(b for b in body if not b.startswith(":"))  # directive options
                out.append((f"{page.relative_to(ROOT)}:{line}", code + "\n"))
    return out


PYTHON_BLOCKS = python_blocks()


def test_the_docs_have_python_blocks() -> None:
    assert len(PYTHON_BLOCKS) >= 10, [name for name, _ in PYTHON_BLOCKS]


@pytest.mark.parametrize(("where", "code"), PYTHON_BLOCKS, ids=[name for name, _ in PYTHON_BLOCKS])
def test_python_block_compiles(where: str, code: str) -> None:
    compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def test_python_blocks_pass_ruff(tmp_path: Path) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (the test extra installs it)")
    names = {}
    for n, (where, code) in enumerate(PYTHON_BLOCKS):
        path = tmp_path / f"block_{n:03d}.py"
        path.write_text(code, encoding="utf-8")
        names[path.name] = where
    done = subprocess.run(
        [
            ruff,
            "check",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--extend-ignore",
            SNIPPET_IGNORE,
            "--output-format",
            "concise",
            "--no-cache",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    report = done.stdout
    for name, where in names.items():
        report = report.replace(str(tmp_path / name), where)
    assert done.returncode == 0, report


def included_files() -> list[tuple[str, Path]]:
    out = []
    directive = re.compile(r"^\{(literalinclude|include|figure|image)\}\s+(?P<target>\S+)")
    for page in sorted(DOCS.rglob("*.md")):
        if "_build" in page.parts:
            continue
        for line, info, _ in blocks(page):
            m = directive.match(info)
            if m:
                out.append((f"{page.relative_to(ROOT)}:{line}", (page.parent / m["target"]).resolve()))
    return out


def test_every_included_file_exists() -> None:
    included = included_files()
    assert any(path.parent == ROOT / "example_dags" for _, path in included)
    missing = [f"{where}: {path}" for where, path in included if not path.is_file()]
    assert not missing, missing


def test_every_example_dag_is_in_the_docs() -> None:
    shown = {path for _, path in included_files()}
    hidden = [p.name for p in sorted((ROOT / "example_dags").glob("*.py")) if p.resolve() not in shown]
    assert not hidden, f"example DAGs no docs page includes: {hidden}"
