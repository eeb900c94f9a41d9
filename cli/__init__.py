"""The command line: ``clustersim`` and ``simulate``, thin typer layers over the library.

One module per command group, each calling one library function: ``simulate``,
``workload``, ``plan``, ``report``, ``validate``, ``profile``, ``reference`` and
``catalog`` (models, gpus); ``main`` assembles them and ``common`` holds the one-line
error and the console.
"""

from cli.main import app, main, simulate_app, simulate_main

__all__ = ["app", "main", "simulate_app", "simulate_main"]
