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


def test_deployment_reference_is_generated_from_the_models() -> None:
    """docs/deployment.md is what ``python -m cli.schema_doc`` prints: regenerate it after
    changing a deployment field or a serving flag."""
    from cli.schema_doc import deployment_reference

    committed = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert committed == deployment_reference()


def test_readme_vllm_section_runs_a_vllm_serve_command_line_as_typed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's "For vLLM users" command: `vllm serve`'s flags, typed as vLLM users
    type them, run (the model by its Hugging Face id, -tp, --kv-cache-dtype, ...)."""
    import shlex

    from typer.testing import CliRunner

    from cli.main import app

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## For vLLM users", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)[0]
    command = " ".join(line.rstrip("\\").strip() for line in block.splitlines()
                       if line.strip() and not line.lstrip().startswith("#"))
    served = " ".join(line.lstrip("# ").rstrip("\\").strip() for line in block.splitlines()
                      if line.lstrip().startswith("#"))
    args = shlex.split(command)
    assert args[0] == "simulate"
    for flag in shlex.split(served)[3:]:  # every flag of the vllm serve line is passed
        if flag.startswith("-"):
            assert flag in args, flag
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "llama-3.1-8b on 2 x H100" in result.output.replace("\n", " ")
