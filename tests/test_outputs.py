"""Outputs whole or not at all: a killed writer leaves the previous folder or none, a
folder is replaced whole, a folder of someone else's files is never touched, and the
command line turns Ctrl-C and bugs into one line."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import typer

from cli.main import run_command
from profiles.errors import ClusterSimError
from simulator import MARKER, simulate, write_folder, write_outputs, write_text
from tests.conftest import make_deployment, make_trace


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def _hidden_siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_a_folder_is_replaced_whole_and_leaves_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_folder(out, {"a.txt": lambda p: p.write_text("1"), "b.txt": lambda p: p.write_text("1")})
    write_folder(out, {"a.txt": lambda p: p.write_text("2")})
    assert _files(out) == {"a.txt": b"2", MARKER: b'{\n  "files": [\n    "a.txt"\n  ]\n}\n'}
    assert _hidden_siblings(out) == []


def test_a_failed_write_leaves_the_previous_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_folder(out, {"a.txt": lambda p: p.write_text("old")})

    def broken(path: Path) -> None:
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(ClusterSimError, match="No space left on device"):
        write_folder(out, {"a.txt": lambda p: p.write_text("new"), "b.txt": broken})
    assert (out / "a.txt").read_text() == "old" and not (out / "b.txt").exists()
    assert _hidden_siblings(out) == []


def test_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ClusterSimError, match=r"--out .*mine: the folder holds files "
                       r"clustersim did not write \(notes.txt\)"):
        write_folder(out, {"a.txt": lambda p: p.write_text("x")})
    assert _files(out) == {"notes.txt": b"keep me"}
    # an earlier output folder where the user has since put a file of their own
    write_folder(tmp_path / "run", {"a.txt": lambda p: p.write_text("x")})
    (tmp_path / "run" / "analysis.ipynb").write_text("{}")
    with pytest.raises(ClusterSimError, match=r"analysis.ipynb"):
        write_folder(tmp_path / "run", {"a.txt": lambda p: p.write_text("y")})
    with pytest.raises(ClusterSimError, match="is not a folder"):
        write_folder(tmp_path / "mine" / "notes.txt", {"a.txt": lambda p: p.write_text("x")})


def test_a_kill_between_the_renames_is_undone_by_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_folder(out, {"a.txt": lambda p: p.write_text("old")})
    # the state a SIGKILL leaves after the old folder moved aside and before the new one
    # moved in (a process id that cannot be running)
    out.rename(tmp_path / ".run.old-999999999-dead")
    (tmp_path / ".run.staging-999999999-dead").mkdir()
    (tmp_path / ".run.staging-999999999-dead" / "a.txt").write_text("new, half")
    (tmp_path / ".x.txt.partial-999999999-dead").write_text("half")
    write_folder(out, {"b.txt": lambda p: p.write_text("new")})  # the old folder came back
    assert sorted(_files(out)) == [MARKER, "b.txt"] and _hidden_siblings(out) == []
    write_text(tmp_path / "x.txt", "whole")
    assert not list(tmp_path.glob(".x.txt.partial-*"))


def test_an_unwritable_target_is_one_clean_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ClusterSimError, match=r"--out .*run: cannot write outputs"):
        write_folder(tmp_path / "file" / "run", {"a.txt": lambda p: p.write_text("x")})
    with pytest.raises(ClusterSimError, match=r"report.html: cannot write"):
        write_text(tmp_path / "file" / "report.html", "x")


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_target_is_one_clean_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ClusterSimError, match="Permission denied"):
            write_folder(tmp_path / "run", {"a.txt": lambda p: p.write_text("x")})
        with pytest.raises(ClusterSimError, match="Permission denied"):
            write_text(tmp_path / "report.html", "x")
    finally:
        tmp_path.chmod(0o700)


def test_sigkill_at_random_instants_leaves_the_previous_output_or_nothing(
        tmp_path: Path) -> None:
    """A forked child writes simulate's outputs (with a trace) over and over, as
    ``simulate --out`` does; it is killed at 24 random instants. After each kill the
    folder is the previous output, whole, or absent, and the next write cleans up."""
    trace = make_trace([0.01 * i for i in range(40)], [300] * 40, [40] * 40)
    result = simulate(make_deployment(gpu="h100"), trace, record_trace=True)
    reference = tmp_path / "reference"
    write_outputs(result, reference)
    expected = _files(reference)
    out = tmp_path / "run"
    started = time.perf_counter()
    write_outputs(result, out)
    cycle_s = time.perf_counter() - started
    rng = random.Random(7)
    outcomes = {"intact": 0, "absent": 0}
    for _ in range(24):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                while True:
                    write_outputs(result, out)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.5, 3.0) * cycle_s)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if out.exists():
            assert _files(out) == expected, "a partial or mixed output folder"
            outcomes["intact"] += 1
        else:
            outcomes["absent"] += 1
        write_outputs(result, out)  # the next run: recovers and cleans up
        assert _files(out) == expected and _hidden_siblings(out) == []
    assert outcomes["intact"] >= 1


def _command(action):  # a one-command app whose command does ``action``
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(action)
    return app


def test_a_bug_is_one_line_and_its_traceback_only_under_debug(
        capsys: pytest.CaptureFixture[str]) -> None:
    def buggy() -> None:
        raise ZeroDivisionError("division by zero")

    assert run_command(_command(buggy), ["simulate"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error: ZeroDivisionError")
    assert "please report it" in lines[0] and "--debug" in lines[0]
    assert run_command(_command(buggy), ["simulate", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "internal error" in err


def test_ctrl_c_is_one_line_and_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    assert run_command(_command(interrupted), ["simulate"]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: interrupted; outputs of this run were not written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_user_errors_keep_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def wrong() -> None:
        raise typer.Exit(code=2)

    assert run_command(_command(wrong), ["simulate"]) == 2
