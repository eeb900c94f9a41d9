"""The serving engine in simulated time: a SimPy process per replica, one event per batch
step, a token-budget scheduler over a paged KV cache, routers, engine presets, metrics,
the Perfetto timeline and the run's output files.

    build_deployment / load_deployment ─► resolve ─► simulate(deployment, trace)
         (config)                       (engine)        └─► SimulationResult ─► write_outputs
"""

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
    "build_deployment",
    "load_deployment",
    "resolve",
    "simulate",
    "write_outputs",
]
