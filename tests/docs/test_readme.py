"""README.md: short, its results table generated, every command in its ```bash blocks valid.

A command line is checked against the CLI itself (the Typer app as click sees it, what `--help` prints): the
sub-command path exists, every option it uses exists on that command, and it has no more positional
arguments than the command takes. `make X` lines must name a target of the Makefile. The same check runs over
the hand-written pages of docs/.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_render_results_readme", DOCS / "gen" / "render_results.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------- the commands
def bash_lines(markdown: str) -> list[str]:
    """The command lines of the ```bash blocks: comments dropped, `\\` continuations joined."""
    lines: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M):
        pending = ""
        for raw in block.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            tokens = shlex.split(line, comments=True)
            if tokens:
                lines.append(shlex.join(tokens))
    return lines


def make_targets(makefile: Path = REPO / "Makefile") -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w.-]*)\s*:(?!=)", makefile.read_text(), flags=re.M)}


def _root_command() -> Any:
    import typer

    from asfyolo_rt.cli.main import app

    return typer.main.get_command(app)


def _takes_value(param: Any) -> bool:
    return not (getattr(param, "is_flag", False) or getattr(param, "count", False))


def check_cli_line(tokens: list[str], root: Any) -> list[str]:
    """Problems of one `asfyolo-rt ...` command line (empty when valid)."""
    cmd, path, i = root, "asfyolo-rt", 1
    positionals: list[str] = []
    problems: list[str] = []
    while i < len(tokens):
        tok = tokens[i]
        subs = getattr(cmd, "commands", None)
        if tok.startswith("-") and tok != "-":
            name = tok.split("=", 1)[0]
            param = next((p for p in cmd.params if getattr(p, "param_type_name", "") == "option"
                          and name in (*p.opts, *p.secondary_opts)), None)
            if param is None and name != "--help":
                problems.append(f"`{path}` has no option {name}")
            elif param is not None and _takes_value(param) and "=" not in tok and name not in param.secondary_opts:
                i += max(param.nargs, 1)
        elif subs is not None:
            if tok not in subs:
                problems.append(f"`{path}` has no command {tok!r}")
                return problems
            cmd, path = subs[tok], f"{path} {tok}"
        else:
            positionals.append(tok)
        i += 1
    if problems or (getattr(cmd, "commands", None) is not None and cmd is not root):
        return problems  # after an unknown option the arguments cannot be told from its values; a group prints help
    arguments = [p for p in cmd.params if getattr(p, "param_type_name", "") == "argument"]
    if not any(p.nargs < 0 for p in arguments) and len(positionals) > sum(p.nargs for p in arguments):
        problems.append(f"`{path}` takes {sum(p.nargs for p in arguments)} argument(s), got {positionals}")
    return problems


def check_commands(markdown: str, targets: set[str], root: Any) -> list[str]:
    """Problems of every `asfyolo-rt` and `make` line in the ```bash blocks of `markdown`."""
    problems = []
    for line in bash_lines(markdown):
        tokens = shlex.split(line)
        if tokens[0] == "asfyolo-rt":
            problems += [f"{line}: {p}" for p in check_cli_line(tokens, root)]
        elif tokens[0] == "make":
            problems += [f"{line}: no Makefile target {t!r}" for t in tokens[1:]
                         if "=" not in t and not t.startswith("-") and t not in targets]
    return problems


@pytest.fixture(scope="module")
def root() -> Any:
    return _root_command()


def test_readme_commands_exist(root: Any) -> None:
    text = README.read_text(encoding="utf-8")
    lines = bash_lines(text)
    assert any(ln.startswith("asfyolo-rt ") for ln in lines) and "make demo" in lines and "make test" in lines
    assert check_commands(text, make_targets(), root) == []


def test_hand_written_docs_commands_exist(root: Any) -> None:
    generated = {DOCS / rel for rel in _load_generator().PAGES}
    problems = []
    for path in sorted(DOCS.rglob("*.md")):
        if path not in generated:
            problems += [f"{path.relative_to(REPO)}: {p}" for p in
                         check_commands(path.read_text(encoding="utf-8"), make_targets(), root)]
    assert problems == []


@pytest.mark.parametrize(("line", "expected"), [
    ("asfyolo-rt predict nuclei.tif --modle bundle/model.onnx", "`asfyolo-rt predict` has no option --modle"),
    ("asfyolo-rt predcit nuclei.tif", "`asfyolo-rt` has no command 'predcit'"),
    ("asfyolo-rt weights tune-conf m.safetensors --dat D", "`asfyolo-rt weights tune-conf` has no option --dat"),
    ("asfyolo-rt build bundle extra-argument", "`asfyolo-rt build` takes 1 argument(s)"),
    ("make dmeo", "no Makefile target 'dmeo'"),
])
def test_a_misspelled_command_fails(root: Any, line: str, expected: str) -> None:
    text = f"```bash\nmake test\n{line}    # a comment\nasfyolo-rt --debug predict a.tif --model=x.onnx\n```\n"
    problems = check_commands(text, make_targets(), root)
    assert len(problems) == 1 and expected in problems[0], problems


def test_valid_forms_pass(root: Any) -> None:
    text = ("```bash\nasfyolo-rt predict a.tif b.tif --model m.onnx --batch 4 --json \\\n"
            "    --conf 0.3\nasfyolo-rt export --fp16 --int8 --out b\nasfyolo-rt weights --help\n"
            "pip install -e '.[docs]'\nmake docs test\n```\n")
    assert check_commands(text, make_targets(), root) == []


# --------------------------------------------------------------------------------- size and numbers
def test_readme_is_short() -> None:
    assert len(README.read_bytes()) <= 10 * 1024


def test_readme_results_table_is_current() -> None:
    gen = _load_generator()
    assert not gen.readme_stale(README), "README.md's results table is stale: run `python docs/gen/render_results.py`"


def test_readme_results_table_follows_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    gen = _load_generator()
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text(encoding="utf-8"), encoding="utf-8")
    results = tmp_path / "results"
    results.mkdir()
    doc = json.loads((REPO / "bench" / "results" / "frame_f1.json").read_text())
    doc["rows"][0]["f1"] = 0.1234
    (results / "frame_f1.json").write_text(json.dumps(doc))
    (results / "levers.json").write_text((REPO / "bench" / "results" / "levers.json").read_text())
    monkeypatch.setattr(gen, "RESULTS", results)
    assert gen.readme_stale(readme)  # a result file edited, the README not regenerated
    # the pages have their own tests (test_docs.py): here only the README counts
    monkeypatch.setattr(gen, "stale", lambda docs_dir, pages=None: [])
    monkeypatch.setattr(gen, "write", lambda docs_dir, pages=None: [])
    assert gen.main(["--check", "--readme", str(readme)]) == 1
    assert f"stale: {readme}" in capsys.readouterr().err
    assert gen.main(["--readme", str(readme)]) == 0  # rewrites the table
    assert "instance F1 0.123" in readme.read_text() and not gen.readme_stale(readme)


def test_readme_numbers_come_from_the_generated_table() -> None:
    """Outside the generated table and code, README types no measurement: no decimals (versions like
    `Python ≥ 3.10` and licence names aside), no values with units, no convolution counts, no CPU flags."""
    text = README.read_text(encoding="utf-8")
    start, end = text.index("<!-- results:start"), text.index("<!-- results:end -->")
    prose = text[:start] + text[end:]
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", prose, flags=re.S))
    hits = re.findall(r"(?<!≥ )(?<!-)\b\d+\.\d+\b|\b\d+(?:\.\d+)? ?(?:ms|s|MiB|GiB|MB|GB|KB|FPS|%|px|points?)\b"
                      r"|\b(?:Int8|Half|Float) \d+|\b\d+ (?:Int8|Half|Float)\b|\bavx\w*|\bAVX\w*|\bamx\w*", prose)
    assert hits == [], f"README types in {hits}: render them from a result file instead"


def test_readme_python_is_valid_python() -> None:
    """The ```python blocks parse, and import only names the package exports."""
    import ast

    import asfyolo_rt

    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert blocks
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "asfyolo_rt":
                assert all(a.name in asfyolo_rt.__all__ for a in node.names), ast.unparse(node)
