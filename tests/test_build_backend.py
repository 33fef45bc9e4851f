"""The build backend's decisions (build the tch module or say why not; stop with one line
without Rust) and its wheel surgery (added files listed in RECORD with the right hashes). The builds themselves run in
`./dev wheel`: the wheel with the tch module, and the sdist built next to another torch."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build_backend"))
ucag_build = pytest.importorskip("ucag_build")  # needs maturin, as every build does


def test_tch_module_is_built_only_next_to_its_torch(monkeypatch):
    monkeypatch.delenv("UCAG_BUILD_TCH", raising=False)
    monkeypatch.setattr(torch, "__version__", "2.11.0+cpu")
    assert ucag_build.tch_skip_reason() is None
    monkeypatch.setattr(torch, "__version__", "2.15.0+cu132")
    reason = ucag_build.tch_skip_reason()
    assert "2.15.0+cu132" in reason and "2.11" in reason
    monkeypatch.setattr(torch, "__version__", "2.1.0")
    assert "2.1.0" in ucag_build.tch_skip_reason()
    monkeypatch.setattr(torch, "__version__", "2.11.0+cpu")
    monkeypatch.setenv("UCAG_BUILD_TCH", "never")
    assert ucag_build.tch_skip_reason() == "UCAG_BUILD_TCH=never"
    monkeypatch.setenv("UCAG_BUILD_TCH", "sometimes")
    with pytest.raises(RuntimeError, match="UCAG_BUILD_TCH"):
        ucag_build.tch_skip_reason()


def test_no_torch_in_the_build_environment_is_a_reason_not_a_failure(monkeypatch):
    monkeypatch.delenv("UCAG_BUILD_TCH", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert "no torch in the build environment" in ucag_build.tch_skip_reason()


def test_a_skipped_module_is_one_line_and_a_portable_wheel(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch, "__version__", "2.15.0")
    monkeypatch.delenv("UCAG_BUILD_TCH", raising=False)
    built = []

    def fake_maturin_build(wheel_directory, config_settings, metadata_directory):
        built.append(wheel_directory)
        return "ucag-0.1.0-cp311-abi3-linux_x86_64.whl"

    name = ucag_build._with_tch(fake_maturin_build, str(tmp_path), None, None)
    assert name.endswith(".whl") and built == [str(tmp_path)]
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("ucag: skipped the tch module (ucag._tch): ") and "2.15.0" in lines[0]
    )
    monkeypatch.setenv("UCAG_BUILD_TCH", "require")
    with pytest.raises(RuntimeError, match="UCAG_BUILD_TCH=require.*2.15.0"):
        ucag_build._with_tch(fake_maturin_build, str(tmp_path), None, None)


def test_added_files_are_in_the_record_with_their_hashes(tmp_path):
    wheel = tmp_path / "ucag-0.1.0-cp311-abi3-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("ucag/__init__.py", "x = 1\n")
        zf.writestr("ucag-0.1.0.dist-info/RECORD", "ucag/__init__.py,sha256=abc,6\nucag-0.1.0.dist-info/RECORD,,\n")
    module, record = tmp_path / "_tch.abi3.so", tmp_path / "_tch_build.json"
    module.write_bytes(b"\x7fELF fake library")
    record.write_text('{"torch": "2.11.0"}\n')
    ucag_build.add_to_wheel(wheel, [module, record])
    with zipfile.ZipFile(wheel) as zf:
        assert zf.testzip() is None
        rows = list(csv.reader(io.StringIO(zf.read("ucag-0.1.0.dist-info/RECORD").decode())))
        assert rows[-1] == ["ucag-0.1.0.dist-info/RECORD", "", ""]
        listed = {row[0]: row for row in rows}
        for path in (module, record):
            data = zf.read(f"ucag/{path.name}")
            assert data == path.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert listed[f"ucag/{path.name}"] == [f"ucag/{path.name}", f"sha256={digest}", str(len(data))]
        assert zf.getinfo("ucag/_tch.abi3.so").external_attr >> 16 == 0o755
        assert zf.read("ucag/__init__.py") == b"x = 1\n"


HOOKS = {
    "get_requires_for_build_wheel": (),
    "get_requires_for_build_editable": (),
    "get_requires_for_build_sdist": (),
    "prepare_metadata_for_build_wheel": ("meta",),
    "prepare_metadata_for_build_editable": ("meta",),
    "build_sdist": ("dist",),
    "build_wheel": ("dist",),
    "build_editable": ("dist",),
}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_without_rust_every_hook_stops_with_one_line_saying_what_to_install(hook, tmp_path):
    # a fresh interpreter whose PATH has no cargo, as on a machine without Rust: the hook
    # must stop before maturin looks for (or tries to download) a toolchain
    args = ", ".join(repr(str(tmp_path / a)) for a in HOOKS[hook])
    code = f"import sys; sys.path.insert(0, {str(Path(ucag_build.__file__).parent)!r}); import ucag_build; ucag_build.{hook}({args})"
    env = {"PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path), "MATURIN_NO_INSTALL_RUST": ""}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [ucag_build.NO_RUST]
    assert "https://rustup.rs" in ucag_build.NO_RUST and "--only-binary ucag" in ucag_build.NO_RUST
    assert not list(tmp_path.glob("dist/*")) and not list(tmp_path.glob("meta/*"))
