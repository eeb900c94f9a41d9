"""Static knowledge: model specs, the hardware catalog, clusters, and cost models."""

from profiles.cluster import ClusterSpec, LinkCost, ReplicaPlacement, build_cluster_graph
from profiles.cost_model import OPERATORS, BatchShape, CostModel, StepCost
from profiles.errors import ClusterSimError
from profiles.hardware import GPUSpec, list_gpus, load_gpu
from profiles.models import ModelSpec, list_models, load_model
from profiles.roofline import RooflineCostModel

__all__ = [
    "OPERATORS",
    "BatchShape",
    "ClusterSimError",
    "ClusterSpec",
    "CostModel",
    "GPUSpec",
    "LinkCost",
    "ModelSpec",
    "ReplicaPlacement",
    "RooflineCostModel",
    "StepCost",
    "build_cluster_graph",
    "list_gpus",
    "list_models",
    "load_gpu",
    "load_model",
]
