"""PEP 517 build backend: maturin's, after checking that the build environment holds the
torch ucag links against (tch's build script would otherwise fail deep inside cargo)."""

from __future__ import annotations

from typing import Any

import maturin
from maturin import (  # noqa: F401  (hooks that need no torch are maturin's own)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: The torch series tch 0.24 is built for; pyproject.toml pins the same.
TORCH_SERIES = "2.11."


def _check_torch() -> None:
    try:
        import torch
    except ImportError as err:
        raise RuntimeError(
            f"ucag: building the extension needs torch=={TORCH_SERIES}* in the build environment, "
            f"and importing torch failed ({err}). Install it (pip install 'torch=={TORCH_SERIES}*') "
            "or let pip build in its default isolated environment, which installs it."
        ) from None
    if not torch.__version__.startswith(TORCH_SERIES):
        raise RuntimeError(
            f"ucag: this version is built against torch=={TORCH_SERIES}* (its libtorch ABI), but the "
            f"build environment has torch {torch.__version__}. Install 'torch=={TORCH_SERIES}*'."
        )


def build_wheel(wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None) -> str:
    _check_torch()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None) -> str:
    _check_torch()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
