"""The discrete-event simulator of LLM clusters: serving (``simulator.serving``) and the
training step (``simulator.training``), over the cost models of ``profiles``.

The serving names are re-exported here, as they were before the split, so
``from simulator import build_deployment, simulate`` keeps working.
"""

from simulator.files import to_json_text, write_folder, write_text
from simulator.serving import (
    ENGINE_PRESETS,
    POLICY_PRESETS,
    ROUTERS,
    DeploymentConfig,
    KVCacheManager,
    Request,
    RequestStatus,
    Scheduler,
    SchedulerConfig,
    SimulationResult,
    StepPlan,
    StepRecorder,
    build_deployment,
    load_deployment,
    resolve,
    simulate,
    write_outputs,
)
from simulator.training import TrainingResult, simulate_training, write_training_outputs

__all__ = [
    "ENGINE_PRESETS",
    "POLICY_PRESETS",
    "ROUTERS",
    "DeploymentConfig",
    "KVCacheManager",
    "Request",
    "RequestStatus",
    "Scheduler",
    "SchedulerConfig",
    "SimulationResult",
    "StepPlan",
    "StepRecorder",
    "TrainingResult",
    "build_deployment",
    "load_deployment",
    "resolve",
    "simulate",
    "simulate_training",
    "to_json_text",
    "write_folder",
    "write_outputs",
    "write_text",
    "write_training_outputs",
]
