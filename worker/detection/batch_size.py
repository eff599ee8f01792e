"""How many frames go through the models at once: chosen by device and memory, not fixed.

Batching pays on a GPU, where one call over many frames keeps the card busy; on a CPU it buys
nothing (the models already use every core for one frame) and costs memory: on the project's
2-core machine a batch of eight full-HD frames through MTCNN took 2.9 GiB peak against 0.9 GiB
one frame at a time, and ran slower (bench/README.md). So a CPU gets one frame per call, and a
GPU gets as many as fit in a share of its memory, from an estimate of what one frame costs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

# What one frame costs the models in memory, as a multiple of its uint8 RGB bytes: MTCNN's image
# pyramid and feature maps measured on this CPU, (2939 - 919) MiB over 8 full-HD frames = 253 MiB a
# frame = 41x its 5.9 MiB; rounded up, so an estimate errs towards smaller batches.
BYTES_PER_INPUT_BYTE = 48
GPU_MEMORY_SHARE = 0.25  # of the card, for one batch's inputs and activations; the rest holds weights and TF's pools
DEFAULT_GPU_MEMORY_MIB = 16 * 1024  # a T4 (g4dn), the smallest card the module's GPU steps default to
MAX_BATCH = 32


def choose_batch_size(devices: Sequence[str], frame_pixels: int, gpu_memory_mib: int | None = None, max_batch: int = MAX_BATCH) -> int:
    """Frames per model call for detectors running on ``devices`` ("CPU", "GPU:0", ...) over frames of ``frame_pixels``.

    One on a CPU. On a GPU, the frames whose estimated cost fits in a quarter of ``gpu_memory_mib``
    (16 GiB when unknown), at least 1 and at most ``max_batch``.
    """
    gpu_models = sum(1 for device in devices if device.startswith("GPU"))
    if not gpu_models:
        return 1
    budget = (gpu_memory_mib or DEFAULT_GPU_MEMORY_MIB) * 1024 * 1024 * GPU_MEMORY_SHARE
    per_frame = max(1, frame_pixels) * 3 * BYTES_PER_INPUT_BYTE * gpu_models
    return int(max(1, min(max_batch, budget // per_frame)))


def gpu_memory_mib(index: int = 0) -> int | None:
    """Total memory of GPU ``index`` from nvidia-smi (the NVIDIA container toolkit mounts it), or None."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={index}", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
