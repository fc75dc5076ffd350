"""The documentation site: generated pages match their sources, the site builds under --strict.

Generated pages (docs/reference/{cli,model-info,bundle,errors}.md, docs/results/*.md, docs/history.md) are
rendered by docs/gen/render_results.py from committed files; a page that differs from its rendering is
stale (fix: `python docs/gen/render_results.py`). The built site loads nothing from another host.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SCRIPT = DOCS / "gen" / "render_results.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_render_results", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _load_generator()


@pytest.fixture(scope="module")
def pages(gen: ModuleType) -> dict[str, str]:
    return gen.render_all()


def test_committed_pages_are_current(gen: ModuleType, pages: dict[str, str]) -> None:
    stale = gen.stale(DOCS, pages)
    assert not stale, f"stale generated pages {stale}: run `python docs/gen/render_results.py`"


def test_check_reports_a_stale_table(gen: ModuleType, pages: dict[str, str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert sorted(gen.write(tmp_path, pages)) == sorted(pages)  # a fresh copy: every page written
    assert gen.stale(tmp_path, pages) == []
    # one number of the speed table edited by hand, one page deleted
    speed = tmp_path / "results" / "speed.md"
    text = speed.read_text()
    row = next(ln for ln in text.splitlines() if ln.startswith("| asfyolo-") and "x |" in ln)
    edited = re.sub(r"\| (\d+\.\d) \|", lambda m: f"| {float(m.group(1)) + 1:.1f} |", row, count=1)
    assert edited != row
    speed.write_text(text.replace(row, edited))
    (tmp_path / "results" / "engines.md").unlink()
    assert gen.stale(tmp_path, pages) == ["results/speed.md", "results/engines.md"]
    monkeypatch.setattr(gen, "render_all", lambda: pages)  # the --check command line, without rendering again
    assert gen.main(["--check", "--docs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stale: docs/results/speed.md" in err and "stale: docs/results/engines.md" in err
    gen.write(tmp_path, pages)
    assert gen.stale(tmp_path, pages) == []


def test_results_pages_follow_their_files(gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A results page is rendered from its file: change a value in (a copy of) the file, the page changes."""
    results = tmp_path / "bench_results"
    shutil.copytree(REPO / "bench" / "results", results)
    doc = json.loads((results / "frame_f1.json").read_text())
    before = gen.frames_page()
    doc["rows"][0]["f1"] = 0.1234
    (results / "frame_f1.json").write_text(json.dumps(doc))
    monkeypatch.setattr(gen, "RESULTS", results)
    after = gen.frames_page()
    assert after != before and "| 0.123 |" in after and "| 0.123 |" not in before

    data = tmp_path / "data"
    shutil.copytree(DOCS / "results" / "data", data)
    acc = json.loads((data / "accuracy.json").read_text())
    acc["tables"][0]["rows"][1][2] = "**0.111**"
    (data / "accuracy.json").write_text(json.dumps(acc))
    monkeypatch.setattr(gen, "DATA", data)
    assert "**0.111**" in gen.transcribed_page("accuracy.json", "Accuracy", "")


def test_transcribed_files_say_so_and_how_to_reproduce() -> None:
    files = sorted((DOCS / "results" / "data").glob("*.json"))
    assert files
    for path in files:
        doc = json.loads(path.read_text())
        assert doc["transcribed"] is True and doc["source"], path
        for t in doc["tables"]:
            assert set(t["reproduce"]) == {"command", "commit", "weights_sha256", "machine", "date"}, (path, t["id"])
            assert all(len(r) == len(t["columns"]) for r in t["rows"]), (path, t["id"])


def test_every_generated_table_has_a_reproduce_line(pages: dict[str, str]) -> None:
    for rel, text in pages.items():
        if not (rel.startswith("results/") or rel == "history.md"):
            continue
        sections = re.split(r"\n#{2,3} ", text)[1:]
        for sec in sections:
            if "\n| --- " in sec or "\n| ---" in sec:
                assert "**Reproduce:**" in sec or sec.startswith("Fastest"), (rel, sec[:80])


# Typed-in measurements on hand-written pages: decimals with two or more places, or a number with a unit of
# time, size or speed. Versions, architectures (sm86) and option values stay allowed.
_MEASUREMENT = re.compile(r"(?<!Python ≥ )\b\d+\.\d{2,}\b|\b\d+(?:\.\d+)? ?(?:ms|s|MiB|GiB|MB|GB|FPS|MP/s|GFLOP/s|%)(?![\w-])")


def test_hand_written_pages_type_no_measurements(pages: dict[str, str]) -> None:
    generated = {DOCS / rel for rel in pages}
    for path in sorted(DOCS.rglob("*.md")):
        if path in generated:
            continue
        # commands and option values in code blocks and code spans may hold values
        text = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", path.read_text(), flags=re.S))
        hits = _MEASUREMENT.findall(text)
        assert not hits, f"{path.relative_to(REPO)} types in {hits}: render them from a file instead"


_EXTERNAL_TAG = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", re.I)
_EXTERNAL_CSS = re.compile(r"url\(\s*[\"']?(?:https?:)?//|@import\s+(?:url\()?\s*[\"']?(?:https?:)?//", re.I)


def external_resources(site: Path) -> list[str]:
    """Files of a built site that load something from another host (scripts, stylesheets, fonts, images)."""
    bad = []
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            bad += [f"{path.relative_to(site)}: {m.group(0)}" for m in _EXTERNAL_TAG.finditer(path.read_text())]
        elif path.suffix == ".css":
            bad += [f"{path.relative_to(site)}: {m.group(0)}" for m in _EXTERNAL_CSS.finditer(path.read_text())]
    return bad


def test_external_resources_are_detected(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text('<a href="https://example.org">text links are fine</a>'
                                     '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
                                     '<script src="//cdn.example.org/mathjax.js"></script>')
    (tmp_path / "s.css").write_text("@font-face{src:url(https://fonts.gstatic.com/x.woff2)}")
    assert len(external_resources(tmp_path)) == 3


def test_site_builds_strict_and_offline(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert 'id="asfyolo-rt-predict"' in cli
    api = (tmp_path / "site" / "reference" / "python-api" / "index.html").read_text()
    assert 'id="asfyolo_rt.runtime.segmenter.Segmenter"' in api
    assert (tmp_path / "site" / "napari.png").is_file() and (tmp_path / "site" / "assets" / "site.png").is_file()
    # the site opens offline: no web fonts, scripts or stylesheets from another host (theme: font: false)
    assert external_resources(tmp_path / "site") == []
