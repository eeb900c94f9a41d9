"""The training step in simulated time: plan checks, memory, pipeline schedules executed
pass by pass on per-stage streams, and the step's outputs."""

from simulator.training.outputs import write_training_outputs
from simulator.training.pipeline import run_pipeline, stage_order
from simulator.training.step import TrainingResult, check_plan, simulate_training

__all__ = [
    "TrainingResult",
    "check_plan",
    "run_pipeline",
    "simulate_training",
    "stage_order",
    "write_training_outputs",
]
