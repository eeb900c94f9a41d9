"""The README and the design notes say what is there: the README's Python snippet runs as
written, and every module or folder the design notes name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_readme_python_snippet_runs_as_written(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippets = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert len(snippets) == 1
    monkeypatch.chdir(ROOT)  # the snippet names the bundled example by its relative path
    exec(compile(snippets[0], "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "p50" in printed and "request_id" in printed  # the TTFT summary and the rows


def test_design_notes_name_paths_that_exist() -> None:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]*(?:\.py)?)`", text))
    assert len(paths) > 30
    missing = sorted(path for path in paths if not (ROOT / path).exists())
    assert missing == []
