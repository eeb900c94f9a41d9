"""``clustersim models`` and ``clustersim gpus``: the model and GPU catalogs as tables."""

from __future__ import annotations

from rich.table import Table

from cli.common import console
from profiles.hardware import list_gpus
from profiles.models import list_models, load_model

__all__ = ["gpus_command", "models_command"]


def models_command() -> None:
    """List the model catalog with derived parameter counts (sources: models.json)."""
    table = Table()
    table.add_column("name", no_wrap=True)  # whole on any width: it is what --model takes
    for header in ("params (B)", "active (B)", "layers", "hidden", "heads/kv", "KV KiB/token"):
        table.add_column(header)
    for entry in list_models():
        spec = load_model(entry["name"])
        table.add_row(spec.name, f"{spec.num_params / 1e9:.2f}",
                      f"{spec.num_active_params / 1e9:.2f}", str(spec.num_layers),
                      str(spec.hidden_size), f"{spec.num_attention_heads}/{spec.num_kv_heads}",
                      f"{spec.kv_bytes_per_token / 1024:.0f}")
    console.print(table)


def gpus_command() -> None:
    """List the GPU catalog."""
    table = Table("name", "short", "BF16 TFLOP/s", "FP8 TFLOP/s", "HBM GiB", "HBM GB/s",
                  "scale-up GB/s", "NIC GB/s", "TDP W")
    for gpu in list_gpus():
        table.add_row(gpu.name, gpu.aliases[0] if gpu.aliases else "",
                      f"{gpu.peak_tflops.bf16:g}",
                      "-" if gpu.peak_tflops.fp8 is None else f"{gpu.peak_tflops.fp8:g}",
                      f"{gpu.hbm_gib:g}", f"{gpu.hbm_bandwidth_gbps:g}",
                      f"{gpu.scale_up.bandwidth_gbps:g}", f"{gpu.nic_bandwidth_gbps:g}",
                      f"{gpu.tdp_w:g}")
    console.print(table)
    console.print("A GPU name may end in @<watts>W, a power limit below its TDP (h100@500W): "
                  "compute-bound kernels slow with it, memory-bound ones do not.")
