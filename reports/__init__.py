"""Reports: HTML pages of Pareto frontiers and plots (issue: HTML report; not built yet).

The package exists so the distribution installs its layout from the start; its public
API is empty until the report lands.
"""

__all__: list[str] = []
