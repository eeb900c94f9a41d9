"""Fuzz: thousands of malformed or adversarial inputs of every kind through the command
line, each sorted as a clean one-line error, a valid result, a traceback, a hang or a
suspicious exit 0 (``tests/fuzzing.py`` defines the kinds and the judge; the CI fuzz
suite runs the same strategies with a few examples each).

    python bench/fuzz.py [--examples 10000] [--timeout 20] [--kinds trace_json,gpu_spec]

Prints a table of outcomes per kind and the first inputs of each bad outcome, and
writes it to ``bench/results/fuzz.md``. Exits 1 when any input was not clean or ok.
"""

from __future__ import annotations

import argparse
import collections
import resource
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests.fuzzing, from a checkout

from facts import run_facts  # bench/, the script's own folder

from simulator import write_text
from tests.fuzzing import KINDS, Case, judge

OUTCOMES = ("clean", "ok", "traceback", "hang", "suspicious")
MEMORY_LIMIT_BYTES = 16 * 2**30  # a runaway input fails as MemoryError, not by the OOM killer


def fuzz_kind(kind: str, examples: int, timeout_s: float,
              counts: dict[str, collections.Counter[str]],
              bad: dict[str, list[str]]) -> None:
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(KINDS[kind]())
    def run(case: Case) -> None:
        verdict = judge(case, timeout_s)
        counts[kind][verdict.outcome] += 1
        if verdict.outcome not in ("clean", "ok") and len(bad[kind]) < 5:
            bad[kind].append(f"{verdict.outcome}: {verdict.detail} <- {' '.join(case.argv)} "
                             f"files {', '.join(case.files)}: "
                             f"{[data[:120] for data in case.files.values()]}")

    run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="inputs in all")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per input")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fuzz.md")
    args = parser.parse_args()
    # the kinds whose inputs run out (the few filesystem cases) first, so the others
    # share out what they leave of --examples
    kinds = sorted((kind for kind in args.kinds.split(",") if kind),
                   key=lambda kind: kind != "filesystem")
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    counts: dict[str, collections.Counter[str]] = {kind: collections.Counter() for kind in kinds}
    bad: dict[str, list[str]] = {kind: [] for kind in kinds}
    started = time.perf_counter()
    per_kind = args.examples // len(kinds)
    for kind in kinds:
        # a kind whose inputs run out (a few filesystem cases) hands its share on
        left = args.examples - sum(sum(c.values()) for c in counts.values())
        share = max(per_kind, left // max(1, len(kinds) - kinds.index(kind)))
        try:
            fuzz_kind(kind, share, args.timeout, counts, bad)
        except Exception as error:  # the fuzzer's own failure: reported, the run goes on
            counts[kind]["traceback"] += 1
            bad[kind].append(f"the fuzzer itself failed: {type(error).__name__}: "
                             f"{str(error)[:300]}")
        print(f"{kind}: {dict(counts[kind])}", flush=True)
    elapsed = time.perf_counter() - started
    total = collections.Counter[str]()
    lines = ["# Fuzzing the command line", "",
             f"`python bench/fuzz.py --examples {args.examples} --timeout {args.timeout:g}`: "
             f"{sum(sum(c.values()) for c in counts.values()):,} inputs in {elapsed:,.0f} s "
             f"({run_facts()}).",
             "", "| kind | inputs | " + " | ".join(OUTCOMES) + " |",
             "|---|---:|" + "---:|" * len(OUTCOMES)]
    for kind in kinds:
        total.update(counts[kind])
        lines.append(f"| {kind} | {sum(counts[kind].values()):,} | "
                     + " | ".join(f"{counts[kind][o]:,}" for o in OUTCOMES) + " |")
    lines.append(f"| **all** | {sum(total.values()):,} | "
                 + " | ".join(f"{total[o]:,}" for o in OUTCOMES) + " |")
    for kind in kinds:
        if bad[kind]:
            lines += ["", f"## {kind}: first bad inputs", ""] + [f"- {b}" for b in bad[kind]]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.out, text)
    sys.exit(1 if total["traceback"] + total["hang"] + total["suspicious"] else 0)


if __name__ == "__main__":
    main()
