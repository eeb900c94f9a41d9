"""Turn the shared published-runs table into clustersim validation records.

    python validation/import_published.py PATH/TO/published_runs.csv

Writes validation/records/published_train.json and published_infer.json, keeping each
row's id, source, locator and notes. The micro-benchmark rows live, hand-checked, in
micro.json. Rows that state SLO targets rather than measurements are skipped and listed.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent / "records"
SHAPE = ("params_B", "layers", "hidden", "heads", "seq")
PARALLEL = ("TP", "PP", "DP", "CP", "EP")


def _number(text: str) -> float | int | None:
    if not text:
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


def convert(row: dict[str, str]) -> dict[str, object] | None:
    try:
        value = float(row["value"])
    except ValueError:
        return None  # e.g. "0.25/0.1": an SLO target, not a measured run
    scenario: dict[str, object] = {"model": row["model"], "gpu": row["gpu"],
                                   "num_gpus": _number(row["n_gpu"])}
    scenario |= {key.lower(): _number(row[key]) for key in SHAPE if row[key]}
    scenario |= {key.lower(): _number(row[key]) for key in PARALLEL if row[key]}
    for key in ("gbs", "mbs"):
        if row[key]:
            scenario[key] = _number(row[key])
    if row["recompute"]:
        scenario["recompute"] = row["recompute"]
    group = "training" if row["domain"] == "train" else "serving"
    kind = f"{group}_{row['metric']}"
    return {
        "id": row["id"], "group": group, "kind": kind, "role": "test",
        "scenario": scenario,
        "measured": {"metric": row["metric"], "value": value, "unit": row["unit"]},
        "source": {"kind": "paper" if "MLPerf" not in row["source"] else "benchmark",
                   "citation": row["source"], "locator": row["locator"]},
        "notes": "; ".join(part for part in (
            row["notes"], "derived from printed figures" if row["derived"] == "1" else "")
            if part),
    }


def main() -> None:
    rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))  # noqa: SIM115
    for domain, name in (("train", "published_train.json"), ("infer", "published_infer.json")):
        records, skipped = [], []
        for row in rows:
            if row["domain"] != domain:
                continue
            record = convert(row)
            (records.append(record) if record else skipped.append(row["id"]))
        document = {"_comment": f"Imported by validation/import_published.py from the shared "
                                f"published-runs table ({domain} rows); skipped (SLO targets, "
                                f"not measurements): {', '.join(skipped) or 'none'}.",
                    "records": records}
        (HERE / name).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        print(f"{name}: {len(records)} records, skipped {skipped}")


if __name__ == "__main__":
    main()
