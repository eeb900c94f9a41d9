"""Planners: search deployments for goodput, latency and cost over the simulator."""

from planners.goodput_bars import goodput_interval
from planners.objectives import find_goodput, scaled_trace
from planners.output import write_plan
from planners.serving import Candidate, ServingPlan, plan_serving
from planners.space import GPUChoice, ServingSpace
from planners.training import TrainingPlan, TrainingSpace, plan_training

__all__ = [
    "Candidate",
    "GPUChoice",
    "ServingPlan",
    "ServingSpace",
    "TrainingPlan",
    "TrainingSpace",
    "find_goodput",
    "goodput_interval",
    "plan_serving",
    "plan_training",
    "scaled_trace",
    "write_plan",
]
