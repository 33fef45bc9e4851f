"""The wheel tag check of build_backend/wheel_check.py on wheels assembled from this
checkout's extension modules (built by the system toolchain, so newer than manylinux2014):
the needs it reads from their symbols, the checks of the portable and the tch wheel in both
directions, and retagging. ``./dev wheel`` runs the same check on the real wheels, the
portable one linked by zig."""

from __future__ import annotations

import base64
import hashlib
import platform
import sys
import zipfile
from pathlib import Path

import pytest

import ucag

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build_backend"))
import wheel_check  # noqa: E402

PACKAGE = Path(ucag.__file__).parent
CORE = next(PACKAGE.glob("_core*.so"), None)
TCH = next(PACKAGE.glob("_tch*.so"), None)
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or CORE is None, reason="needs the Linux extension modules of this checkout"
)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _wheel(folder: Path, platform: str, modules: list[Path]) -> Path:
    """A wheel named for ``platform`` holding ``modules`` under ucag/, with WHEEL and RECORD."""
    wheel = folder / f"ucag-0.1.0-cp311-abi3-{platform}.whl"
    info = "ucag-0.1.0.dist-info"
    files = {f"ucag/{m.name}": m.read_bytes() for m in modules}
    files["ucag/__init__.py"] = b""
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n" + "".join(f"Tag: cp311-abi3-{p}\n" for p in platform.split("."))
    ).encode()
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_tags_of_wheel_names():
    name = Path("ucag-0.1.0-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl")
    assert wheel_check.platform_tags(name) == ["manylinux2014_x86_64", "manylinux_2_17_x86_64"]
    assert wheel_check.claimed_glibc(name) == (2, 17)
    assert wheel_check.claimed_glibc(Path("ucag-0.1.0-cp311-abi3-manylinux_2_34_x86_64.whl")) == (2, 34)
    assert wheel_check.claimed_glibc(Path("ucag-0.1.0-cp311-abi3-manylinux_2_28_x86_64.manylinux_2_34_x86_64.whl")) == (
        2,
        28,
    )
    assert wheel_check.claimed_glibc(Path("ucag-0.1.0-cp311-abi3-linux_x86_64.whl")) is None
    with pytest.raises(ValueError, match="not a wheel file name"):
        wheel_check.platform_tags(Path("ucag.whl"))


def test_needs_are_read_from_the_symbol_versions():
    needs = wheel_check.module_needs(CORE.name, CORE.read_bytes())
    assert needs.arch == platform.machine()
    glibc = needs.newest("GLIBC")
    assert glibc != "-" and any(v.startswith("GLIBC_") for names in needs.versions.values() for v in names)
    # the policy is the oldest whose glibc covers the newest GLIBC version the module needs
    assert needs.glibc >= tuple(int(p) for p in glibc.split("."))[:2]
    assert needs.policy == f"manylinux_{needs.glibc[0]}_{needs.glibc[1]}"


def test_the_portable_check_refuses_a_system_linked_core(tmp_path):
    needs = wheel_check.module_needs(CORE.name, CORE.read_bytes())
    wheel = _wheel(tmp_path, "manylinux2014_x86_64.manylinux_2_17_x86_64", [CORE])
    problems = wheel_check.check_portable(wheel)
    if needs.glibc > (2, 17):  # the system toolchain of every supported build host links newer symbols
        assert any("newer than manylinux2014's glibc 2.17" in p for p in problems), problems
    else:
        assert problems == []
    assert wheel_check.main(["check", "--portable", str(wheel)]) == (1 if problems else 0)


@pytest.mark.skipif(TCH is None, reason="this checkout has no tch module")
def test_the_tch_wheel_must_be_tagged_with_exactly_what_its_symbols_need(tmp_path):
    policy, glibc = wheel_check.needed_policy([wheel_check.module_needs(m.name, m.read_bytes()) for m in (CORE, TCH)])
    arch = platform.machine()
    exact = _wheel(tmp_path, f"{policy}_{arch}", [CORE, TCH])
    assert wheel_check.check_tch(exact) == []
    assert wheel_check.main(["check", "--tch", str(exact)]) == 0
    older = _wheel(tmp_path, f"manylinux_2_{glibc[1] - 1}_{arch}", [CORE, TCH])
    assert any("it would fail to import there" in p for p in wheel_check.check_tch(older))
    newer = _wheel(tmp_path, f"manylinux_2_{glibc[1] + 5}_{arch}", [CORE, TCH])
    assert any("turns away systems it runs on" in p for p in wheel_check.check_tch(newer))
    # the tch module never goes into the portable wheel, and a tch wheel has it
    assert any("holds the tch module" in p for p in wheel_check.check_portable(exact))
    (tmp_path / "core-only").mkdir()
    assert any(
        "no ucag/_tch module" in p
        for p in wheel_check.check_tch(_wheel(tmp_path / "core-only", f"{policy}_{arch}", [CORE]))
    )


@pytest.mark.skipif(TCH is None, reason="this checkout has no tch module")
def test_retagging_names_the_wheel_for_its_symbols_and_keeps_it_valid(tmp_path):
    built = _wheel(tmp_path, f"linux_{platform.machine()}", [CORE, TCH])
    policy, _ = wheel_check.needed_policy(wheel_check.wheel_modules(built))
    retagged = wheel_check.retag(built)
    assert retagged.name == f"ucag-0.1.0-cp311-abi3-{policy}_{platform.machine()}.whl" and not built.exists()
    assert wheel_check.check_tch(retagged) == []
    with zipfile.ZipFile(retagged) as archive:
        assert archive.testzip() is None
        wheel_info = archive.read("ucag-0.1.0.dist-info/WHEEL").decode().splitlines()
        assert [line for line in wheel_info if line.startswith("Tag: ")] == [
            f"Tag: cp311-abi3-{policy}_{platform.machine()}"
        ]
        record = archive.read("ucag-0.1.0.dist-info/RECORD").decode().splitlines()
        for name in archive.namelist():
            if not name.endswith("RECORD"):
                assert _record_line(name, archive.read(name)) in record, name
        assert archive.read(f"ucag/{TCH.name}") == TCH.read_bytes()
