"""The docs: every link and image exists, the command-line page matches the parser, and the
tutorial notebook runs from top to bottom in a real Jupyter kernel."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings."""
    anchors = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_and_image_exists(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_the_command_line_page_is_what_the_parser_says():
    if sys.version_info[:2] != (3, 11):  # argparse's layout differs between Pythons
        from digitnet.cli.args import build_parser

        text = (ROOT / "docs" / "cli.md").read_text()
        parser = build_parser()
        flags = {s for a in parser._actions for s in a.option_strings}
        assert all(flag in text for flag in flags)
        return
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "make_cli_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_notebook_is_committed_without_outputs():
    import nbformat

    notebook = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_the_tutorial_notebook_runs_in_a_real_kernel(real_mnist_dir, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DIGITNET_DATA_DIR", str(real_mnist_dir))
    notebook = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {cell.source: cell.outputs for cell in notebook.cells if cell.cell_type == "code"}
    figures = [source for source in outputs if source.startswith("plots.")]
    assert len(figures) == 5
    for source in figures:  # each plot is shown inline, as a PNG
        assert any("image/png" in out.get("data", {}) for out in outputs[source]), source
    evaluated = next(outs for source, outs in outputs.items() if "digitnet.evaluate(" in source)
    text = evaluated[0]["data"]["text/plain"]
    accuracy = float(re.search(r"accuracy (\d+\.\d+)%", text).group(1))
    assert accuracy > 97.0, text
    assert (tmp_path / "model.safetensors").exists()
