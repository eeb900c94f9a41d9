"""A reference run from start to folder (torch; the ``profile`` extra): the executor
built on the device, the trace replayed through the driver, and the run folder written
with every fact a measurement must carry.

    open_executor(resolved, device=...)  ─►  measure_run(...)  ─►  RUN/steps.csv
                                                                    RUN/requests.csv
                                                                    RUN/run.json (GPU, driver,
                                                                    CUDA/ROCm, torch, date,
                                                                    command, deployment, trace)
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from profiles.errors import ClusterSimError
from profiles.measure.device import command_line, device_facts
from simulator import DeploymentConfig, to_json_text, write_folder
from simulator.serving.engine import ResolvedDeployment
from validation.reference.driver import ReferenceRun, run_reference
from validation.reference.model import ReferenceModel
from workloads.schema import RequestTrace

__all__ = ["measure_run", "open_executor"]


def open_executor(resolved: ResolvedDeployment, *, device: str, dtype: str,
                  num_layers: int | None, seed: int) -> ReferenceModel:
    """The deployment's model with random weights and its paged KV cache on ``device``.

    Raises:
        ClusterSimError: no such device, or the weights and KV cache do not fit on it.
    """
    try:
        return ReferenceModel(resolved.model, num_blocks=resolved.memory.num_gpu_blocks,
                              block_size=resolved.memory.block_size, device=device,
                              dtype=dtype, num_layers=num_layers, seed=seed)
    except RuntimeError as error:  # no device, or out of device memory
        raise ClusterSimError(f"--device {device}: {str(error).splitlines()[0]}; lower "
                              "--num-gpu-blocks if the KV cache does not fit") from None


def measure_run(config: DeploymentConfig, resolved: ResolvedDeployment, trace: RequestTrace,
                workload: Path, executor: ReferenceModel, out: str | Path, *, device: str,
                dtype: str, num_layers: int | None, seed: int) -> ReferenceRun:
    """Replay ``trace`` on ``executor`` and write the run folder ``out`` whole.

    Raises:
        ClusterSimError: the folder cannot be written.
    """
    run = run_reference(resolved, trace, executor, seed=seed)
    facts = {
        "device": device_facts(device), "dtype": dtype,
        "layers_built": num_layers or resolved.model.num_layers,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "deployment": config.model_dump(mode="json"),
        "workload": {"file": workload.name,
                     "sha256": hashlib.sha256(workload.read_bytes()).hexdigest(),
                     "num_requests": len(trace)},
        "num_gpu_blocks": run.num_gpu_blocks, "wall_s": run.wall_s,
        "num_steps": len(run.steps),
    }
    write_folder(out, {
        "steps.csv": lambda path: run.steps.to_csv(path, index=False),
        "requests.csv": lambda path: run.requests.to_csv(path, index=False),
        "run.json": lambda path: path.write_text(to_json_text(facts)),
    })
    return run
