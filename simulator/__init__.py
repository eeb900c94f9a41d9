"""The discrete-event simulator of serving clusters: build, run, collect."""

from simulator.config import DeploymentConfig, build_deployment, load_deployment
from simulator.engine import SimulationResult, resolve, simulate
from simulator.kv_cache import KVCacheManager
from simulator.metrics import StepRecorder
from simulator.outputs import write_outputs
from simulator.policies import POLICY_PRESETS
from simulator.request import Request, RequestStatus
from simulator.router import ROUTERS
from simulator.scheduler import Scheduler, SchedulerConfig, StepPlan

__all__ = [
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
    "build_deployment",
    "load_deployment",
    "resolve",
    "simulate",
    "write_outputs",
]
