"""Reports: self-contained HTML of plans (Pareto frontiers) and of single runs."""

from reports.html import plan_report, run_report

__all__ = ["plan_report", "run_report"]
