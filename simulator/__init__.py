"""The discrete-event simulator of LLM clusters: serving (``simulator.serving``) and the
training step (``simulator.training``), over the cost models of ``profiles``.

The serving names are re-exported here, as they were before the split, so
``from simulator import build_deployment, simulate`` keeps working.
"""

from profiles.files import MARKER, check_output_folder, to_json_text, write_folder, write_text
from simulator.serving.config import DeploymentConfig, build_deployment, load_deployment
from simulator.serving.engine import SimulationResult, resolve, simulate
from simulator.serving.kv_cache import KVCacheManager
from simulator.serving.metrics import StepRecorder
from simulator.serving.outputs import write_outputs
from simulator.serving.policies import POLICY_PRESETS
from simulator.serving.presets import ENGINE_PRESETS
from simulator.serving.request import Request, RequestStatus
from simulator.serving.router import ROUTERS
from simulator.serving.scheduler import Scheduler, SchedulerConfig, StepPlan
from simulator.training import TrainingResult, simulate_training, write_training_outputs

__all__ = [
    "ENGINE_PRESETS",
    "MARKER",
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
    "check_output_folder",
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
