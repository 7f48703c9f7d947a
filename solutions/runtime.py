"""Where training runs: the device, the seeds, the numeric precision and the progress bar."""

from __future__ import annotations

import platform
import random
import sys

import numpy as np
import torch

from .train import get_device

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(name: str = "auto") -> torch.device:
    """``auto`` means ``get_device()``; asking for a device that is not there raises ``ValueError``."""
    if name == "auto":
        return get_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu "
            "(in Colab: Runtime > Change runtime type > GPU)."
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            "--device mps was asked for but Apple MPS is not available; use --device auto or cpu."
        )
    return torch.device(name)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 autocast pays off."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into ``bf16``, ``fp16`` or ``fp32`` for this device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "fp16"  # bf16 is native from Ampere on
    if device.type == "cpu" and cpu_supports_bf16():
        return "bf16"
    return "fp32"


LOG_INTERVAL_S = 30  # off a terminal (a CI log, a Slurm job's file) a progress bar writes at most this often


def make_progress(total: int, desc: str, enabled: bool = True):
    """A tqdm progress bar, sparse off a terminal; or a silent stand-in while nbgrader grades (its stderr
    would score 0).

    Off a terminal every refresh is a new line in the log, so it refreshes every ``LOG_INTERVAL_S`` seconds at most.
    """
    from tqdm.auto import tqdm

    from data_utils.lessons import grading

    disabled = not enabled or grading()
    interval = {} if sys.stderr.isatty() else {"mininterval": LOG_INTERVAL_S, "maxinterval": LOG_INTERVAL_S}
    return tqdm(total=total, desc=desc, disable=disabled, leave=False, dynamic_ncols=True, **interval)


def versions() -> dict[str, str]:
    """Versions of what produced the numbers."""
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def device_name(device: torch.device) -> str:
    """A readable name of the training device."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return device.type
