"""Planners: searches over deployments and training plans (issue: Planners; not built yet).

The package exists so the distribution installs its layout from the start; its public
API is empty until the planners land.
"""

__all__: list[str] = []
