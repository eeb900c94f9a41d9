"""Real runs to check the simulator against: a trace replayed through the project's own
scheduler on a real device, and the simulator's errors against it.

    driver.py     the trace in wall-clock time through ``Scheduler``, each step executed
    executor.py   the seam: ``StepRows`` in, sampled tokens and device seconds out
    model.py      the torch executor: a random-weight Llama-style model, paged KV cache
                  (the ``profile`` extra; imported only where a run is made)
    compare.py    per-step and per-request errors of the simulator against a run
"""

from validation.reference.compare import compare_reference, fit_host_overhead, load_reference_run
from validation.reference.driver import (
    STEP_COLUMNS,
    BlockTables,
    ReferenceRun,
    check_reference_deployment,
    run_reference,
)
from validation.reference.executor import StepExecutor, StepRows

__all__ = [
    "STEP_COLUMNS",
    "BlockTables",
    "ReferenceRun",
    "StepExecutor",
    "StepRows",
    "check_reference_deployment",
    "compare_reference",
    "fit_host_overhead",
    "load_reference_run",
    "run_reference",
]
