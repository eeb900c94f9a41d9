"""What a benchmark's results file records about its run: the date, the commit, the
Python and the machine's CPUs (imported by the scripts beside it)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path


def run_facts() -> str:
    """When, where and on which commit the run was made."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return (f"{datetime.date.today().isoformat()}, commit {commit}, Python "
            f"{platform.python_version()}, {os.cpu_count()} CPUs")
