"""Which kernels run: the installed torch, the optional libtorch module ``ucag._tch`` and
the ``UCAG_KERNELS`` setting.

A wheel always has the portable core ``ucag._core`` (ndarray + rayon, linked against no
libtorch). It may also have ``ucag._tch``, the same kernels on libtorch through ``tch``,
linked against one torch series; ``ucag/_tch_build.json`` records which. That module is
imported only when the installed torch is that series (anything else would fail to load,
or worse): the record is compared before any import, and the import is tried once.

``UCAG_KERNELS`` (read at every kernel call): ``auto`` (default; the tch module where it
matches, for the tensors the portable core does not take or is slower on), ``portable``
(never load the tch module: numpy views and torch operations only), ``tch`` (require the
tch module and use it for every cpu/cuda tensor; an error says why it cannot be used).
[show_config][ucag.runtime.show_config] prints what runs for each kind of input and why.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Literal

import torch

from ._core import __version__

KERNELS_ENV = "UCAG_KERNELS"
Requested = Literal["auto", "portable", "tch"]
_BUILD_RECORD = Path(__file__).with_name("_tch_build.json")


def torch_series(version: str) -> str:
    """The major.minor series of a torch version.

    Args:
        version: A torch version string.

    Returns:
        Its series, the first two numbers.

    Examples:
        >>> torch_series("2.11.0+cu130")
        '2.11'
    """
    return ".".join(version.split("+")[0].split(".")[:2])


def requested_kernels() -> Requested:
    """The ``UCAG_KERNELS`` setting, validated.

    Returns:
        ``"auto"`` (also when unset or empty), ``"portable"`` or ``"tch"``, read
            case-insensitively.

    Raises:
        ValueError: ``UCAG_KERNELS`` holds another value.
    """
    value = os.environ.get(KERNELS_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "portable", "tch"):
        raise ValueError(f"{KERNELS_ENV}: must be 'auto', 'portable' or 'tch', got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class TchProbe:
    """The outcome of looking for the tch module (made once per process).

    Attributes:
        module: The imported tch module, or None when it cannot be used.
        reason: Why it is used, or why not.
        built_for: The torch version the tch module was built for (None without one).
    """

    module: ModuleType | None
    reason: str
    built_for: str | None


@functools.cache
def _probe_tch() -> TchProbe:
    if not _BUILD_RECORD.exists():
        return TchProbe(
            None,
            "this installation has no tch module (a portable wheel: manylinux2014, macOS, Windows, or built without torch 2.11 in the build environment)",
            None,
        )
    record = json.loads(_BUILD_RECORD.read_text(encoding="utf-8"))
    built_for = str(record["torch"])
    installed = torch.__version__
    if torch_series(installed) != record["series"]:
        return TchProbe(
            None,
            f"it was built for torch {record['series']}.x ({built_for}) and torch {installed} is installed",
            built_for,
        )
    if bool(record.get("cxx11_abi", True)) != bool(torch._C._GLIBCXX_USE_CXX11_ABI):
        return TchProbe(
            None, f"it was built for the other C++ ABI than the installed torch {installed} uses", built_for
        )
    try:
        module = importlib.import_module("ucag._tch")
    except ImportError as err:
        return TchProbe(None, f"importing it failed ({err})", built_for)
    return TchProbe(
        module, f"built for torch {built_for}, the installed torch {installed} is the same series", built_for
    )


def tch_module() -> ModuleType | None:
    """The tch module when it is to be used.

    Returns:
        The module, or None (it is then never imported) under ``UCAG_KERNELS=portable`` or
            where it does not match the installed torch.

    Raises:
        RuntimeError: ``UCAG_KERNELS=tch`` and the tch module cannot be used (the message
            says why).
        ValueError: ``UCAG_KERNELS`` holds an unknown value.
    """
    requested = requested_kernels()
    if requested == "portable":
        return None
    probe = _probe_tch()
    if probe.module is None and requested == "tch":
        raise RuntimeError(f"{KERNELS_ENV}=tch, but the tch module cannot be used: {probe.reason}")
    return probe.module


KernelPath = Literal["tch", "portable", "torch ops"]
PORTABLE_DTYPES = (torch.float32, torch.float64)


def kernel_path(device_type: str, dtype: torch.dtype) -> KernelPath:
    """The kernels a tensor of this device type and dtype gets.

    The portable core for CPU float32/64 (the faster CPU path even where the tch module
    loads, benchmarks/kernels.py), the tch module for other cpu/cuda tensors where it
    matches (for every cpu/cuda tensor under ``UCAG_KERNELS=tch``), torch operations
    otherwise.

    Args:
        device_type: The tensor's device type (``"cpu"``, ``"cuda"``, ...).
        dtype: The tensor's dtype.

    Returns:
        ``"tch"``, ``"portable"`` or ``"torch ops"``.

    Raises:
        RuntimeError: ``UCAG_KERNELS=tch`` and the tch module cannot be used.
        ValueError: ``UCAG_KERNELS`` holds an unknown value.
    """
    portable = device_type == "cpu" and dtype in PORTABLE_DTYPES
    if tch_module() is not None and device_type in ("cpu", "cuda") and (requested_kernels() == "tch" or not portable):
        return "tch"
    return "portable" if portable else "torch ops"


@dataclass(frozen=True)
class KernelConfig:
    """What [show_config][ucag.runtime.show_config] prints.

    Attributes:
        ucag: The ucag version.
        torch: The installed torch version.
        cuda_available: Whether torch sees a CUDA device.
        requested: The ``UCAG_KERNELS`` setting.
        tch_loaded: Whether the tch module is loaded.
        tch_reason: Why the tch module is used, or why not.
        tch_built_for: The torch version the tch module was built for (None without one).
        paths: Maps a kind of input to the kernels that run on it (``"tch"``,
            ``"portable"`` or ``"torch ops"``). The kinds: numpy arrays, CPU float32/64
            tensors, CPU float16/bf16 tensors, CUDA tensors, other devices.
        why: Maps each kind of input to why those kernels run on it.
    """

    ucag: str
    torch: str
    cuda_available: bool
    requested: Requested
    tch_loaded: bool
    tch_reason: str
    tch_built_for: str | None
    paths: dict[str, str] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)


#: A representative (device type, dtype) of each kind of tensor show_config reports.
_TENSOR_KINDS = {
    "CPU float32/64": ("cpu", torch.float32),
    "CPU float16/bf16": ("cpu", torch.bfloat16),
    "CUDA tensors": ("cuda", torch.float32),
    "other devices": ("xpu", torch.float32),
}
_WHY = {
    "portable": "zero-copy numpy views into the ndarray + rayon kernels, GIL released",
    "tch": "libtorch kernels on the tensor's device, zero-copy",
    "torch ops": "torch operations on the tensor's device",
}


def kernel_config() -> KernelConfig:
    """The kernels each kind of input gets in this process, and why.

    Returns:
        The versions, the tch module's state and the kernels of each kind of input.

    Raises:
        RuntimeError: ``UCAG_KERNELS=tch`` and the tch module cannot be used.
        ValueError: ``UCAG_KERNELS`` holds an unknown value.
    """
    requested = requested_kernels()
    if requested == "portable":
        tch_loaded, reason, built_for = False, f"{KERNELS_ENV}=portable: not loaded", None
    else:
        probe = _probe_tch()
        tch_loaded, reason, built_for = probe.module is not None, probe.reason, probe.built_for
    paths: dict[str, str] = {"numpy arrays": "portable"}
    why = {"numpy arrays": "ndarray + rayon kernels, GIL released"}
    for kind, (device_type, dtype) in _TENSOR_KINDS.items():
        path = kernel_path(device_type, dtype)
        paths[kind], why[kind] = path, _WHY[path]
    if paths["CPU float32/64"] == "portable" and tch_loaded:
        why["CPU float32/64"] += "; faster than the tch kernels on the CPU"
    if paths["CPU float16/bf16"] == "torch ops":
        why["CPU float16/bf16"] += " (numpy has no bfloat16)"
    if paths["CUDA tensors"] == "torch ops":
        why["CUDA tensors"] += ", the same ATen calls as the tch kernels"
    return KernelConfig(
        ucag=__version__,
        torch=torch.__version__,
        cuda_available=torch.cuda.is_available(),
        requested=requested,
        tch_loaded=tch_loaded,
        tch_reason=reason,
        tch_built_for=built_for,
        paths=paths,
        why=why,
    )


def show_config() -> None:
    """Print the torch version, whether the tch module is loaded and why, and which kernels run.

    The kernels are listed for numpy arrays, CPU tensors, CUDA tensors and other devices
    ([kernel_config][ucag.runtime.kernel_config] returns the same as data).

    Raises:
        RuntimeError: ``UCAG_KERNELS=tch`` and the tch module cannot be used.
        ValueError: ``UCAG_KERNELS`` holds an unknown value.
    """
    config = kernel_config()
    print(f"ucag {config.ucag}")
    print(f"torch {config.torch} (CUDA {'available' if config.cuda_available else 'not available'})")
    print(f"{KERNELS_ENV}={config.requested}")
    print(f"tch module (ucag._tch): {'loaded' if config.tch_loaded else 'not used'}: {config.tch_reason}")
    print("kernels:")
    for kind, path in config.paths.items():
        print(f"  {kind:17s} {path:10s} {config.why[kind]}")
