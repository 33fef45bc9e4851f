"""PEP 517 build backend: maturin's, plus the optional libtorch module.

maturin builds the portable extension ``ucag._core`` (the ndarray/rayon kernels, linked
against no libtorch), which every wheel has. When the build environment holds the torch
series that tch targets (TCH_TORCH_SERIES), this backend also builds the crate in tch/ as
``ucag._tch`` and adds it to the wheel with ``ucag/_tch_build.json``, the record of the
torch it was linked against, which ``ucag.kernels`` compares with the installed torch
before importing the module. With any other torch, or none (pip's isolated build), it
prints one line saying why the module was skipped and builds the portable wheel.

``UCAG_BUILD_TCH`` = ``auto`` (default) | ``never`` | ``require`` (fail instead of skipping).

Every build compiles Rust. Without ``cargo`` on PATH each hook stops with one line saying
what to install (maturin would instead try to download a toolchain, which fails obscurely
offline and surprises users who meant to install a prebuilt wheel).
``python build_backend/ucag_build.py DEST`` builds the module into DEST (used by ``./dev``
for the editable development install).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import maturin

#: The torch series tch 0.24 (tch/Cargo.toml) is built for.
TCH_TORCH_SERIES = "2.11"
ROOT = Path(__file__).resolve().parents[1]
MODULE_FILE = "_tch.abi3.so"
RECORD_FILE = "_tch_build.json"


NO_RUST = (
    "ucag: building ucag from source needs Rust (cargo on PATH), and this machine has none: "
    "install it from https://rustup.rs (or your system's rust and cargo packages) and retry, "
    "or install a prebuilt wheel: pip install --only-binary ucag ucag"
)


def require_rust() -> None:
    """Stop the build with one line (:data:`NO_RUST`) when cargo is not on PATH."""
    if shutil.which("cargo") is None:
        sys.exit(NO_RUST)


def tch_skip_reason() -> str | None:
    """None when the tch module can be built here; otherwise why not, in one phrase."""
    mode = os.environ.get("UCAG_BUILD_TCH", "auto")
    if mode not in ("auto", "never", "require"):
        raise RuntimeError(f"ucag: UCAG_BUILD_TCH must be auto, never or require, got {mode!r}")
    if mode == "never":
        return "UCAG_BUILD_TCH=never"
    if not sys.platform.startswith("linux"):
        return f"the tch module is built on Linux only, not on {sys.platform}"
    try:
        import torch
    except ImportError:
        return f"no torch in the build environment (pip's isolated build has none; build with torch=={TCH_TORCH_SERIES}.* installed and --no-build-isolation to include it)"
    series = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    if series != TCH_TORCH_SERIES:
        return f"the build environment has torch {torch.__version__}, and tch 0.24 links torch {TCH_TORCH_SERIES}'s libtorch"
    if shutil.which("cargo") is None:
        return "no cargo on PATH"
    return None


def build_tch_module(dest: Path) -> list[Path]:
    """Build ``ucag._tch`` with cargo against the running interpreter's torch and copy it,
    with its build record, into ``dest``; returns the two files."""
    import torch

    env = dict(os.environ, LIBTORCH_USE_PYTORCH="1", VIRTUAL_ENV=sys.prefix)
    # torch-sys runs `python` to find libtorch: make that this interpreter.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    target = Path(env.get("CARGO_TARGET_DIR", ROOT / "target"))
    # The crate's `python` feature (on by default; named here all the same) is the pyo3 module.
    subprocess.run(
        [
            "cargo",
            "build",
            "--release",
            "--manifest-path",
            str(ROOT / "Cargo.toml"),
            "-p",
            "ucag-tch",
            "--lib",
            "--features",
            "python",
        ],
        env=env,
        check=True,
    )
    dest.mkdir(parents=True, exist_ok=True)
    module = dest / MODULE_FILE
    # Copy, then rename over the old file: a process that has the old module loaded keeps
    # its mapping (overwriting a loaded library in place crashes that process).
    partial = dest / (MODULE_FILE + ".partial")
    shutil.copyfile(target / "release" / "libucag_tch.so", partial)
    os.replace(partial, module)
    record = dest / RECORD_FILE
    record.write_text(
        json.dumps(
            {
                "torch": torch.__version__,
                "series": TCH_TORCH_SERIES,
                "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
                "tch": "0.24",
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    return [module, record]


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def add_to_wheel(wheel: Path, files: list[Path], package: str = "ucag") -> None:
    """Add ``files`` under ``package/`` to ``wheel`` and to its RECORD."""
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = Path(tmp) / wheel.name
        with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as out:
            record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
            for item in src.infolist():
                if item.filename != record_name:
                    out.writestr(item, src.read(item.filename))
            lines = src.read(record_name).decode().splitlines()
            for path in files:
                arcname = f"{package}/{path.name}"
                data = path.read_bytes()
                info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o755 << 16 if path.suffix == ".so" else 0o644 << 16
                out.writestr(info, data, zipfile.ZIP_DEFLATED)
                lines.insert(len(lines) - 1, _record_line(arcname, data))
            out.writestr(record_name, "\n".join(lines) + "\n")
        shutil.move(rebuilt, wheel)


def _with_tch(
    build: Any, wheel_directory: str, config_settings: dict[str, Any] | None, metadata_directory: str | None
) -> str:
    reason = tch_skip_reason()
    if reason is not None:
        if os.environ.get("UCAG_BUILD_TCH") == "require":
            raise RuntimeError(f"ucag: UCAG_BUILD_TCH=require, but the tch module cannot be built: {reason}")
        print(
            f"ucag: skipped the tch module (ucag._tch): {reason}; the wheel has the portable kernels only",
            file=sys.stderr,
        )
        return str(build(wheel_directory, config_settings, metadata_directory))
    name = str(build(wheel_directory, config_settings, metadata_directory))
    with tempfile.TemporaryDirectory() as tmp:
        add_to_wheel(Path(wheel_directory) / name, build_tch_module(Path(tmp)))
    print(f"ucag: added the tch module (ucag._tch) for torch {TCH_TORCH_SERIES}", file=sys.stderr)
    return name


# maturin's hooks, each after the check for Rust
def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    require_rust()
    return list(maturin.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    require_rust()
    return list(maturin.get_requires_for_build_editable(config_settings))


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    require_rust()
    return list(maturin.get_requires_for_build_sdist(config_settings))


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    require_rust()
    return str(maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings))


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    require_rust()
    return str(maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings))


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    require_rust()
    return str(maturin.build_sdist(sdist_directory, config_settings))


def build_wheel(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    require_rust()
    return _with_tch(maturin.build_wheel, wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    # An editable install imports from python/ucag: the module goes there, not into the wheel.
    require_rust()
    name = str(maturin.build_editable(wheel_directory, config_settings, metadata_directory))
    reason = tch_skip_reason()
    if reason is None:
        build_tch_module(ROOT / "python" / "ucag")
    else:
        print(f"ucag: skipped the tch module (ucag._tch): {reason}", file=sys.stderr)
    return name


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python build_backend/ucag_build.py DEST  (builds ucag._tch into DEST)")
    why = tch_skip_reason()
    if why is not None:
        sys.exit(f"ucag: cannot build the tch module: {why}")
    for built in build_tch_module(Path(sys.argv[1])):
        print(built)
