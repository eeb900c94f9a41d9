"""Planners: search deployments for goodput, latency and cost over the simulator."""

from planners.objectives import find_goodput, scaled_trace
from planners.output import write_plan
from planners.serving import Candidate, ServingPlan, plan_serving
from planners.space import GPUChoice, ServingSpace

__all__ = [
    "Candidate",
    "GPUChoice",
    "ServingPlan",
    "ServingSpace",
    "find_goodput",
    "plan_serving",
    "scaled_trace",
    "write_plan",
]
