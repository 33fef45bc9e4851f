"""The platform tags of ucag's Linux wheels, read from their extension modules' symbols.

A manylinux tag promises the glibc (and libstdc++, libgcc) the wheel's shared objects need
at most. This module reads what each ``.so`` in a wheel really needs (its ELF version
requirements, ``.gnu.version_r``), finds the oldest manylinux policy that allows all of them
(auditwheel's own policy table), and compares that with the tag in the wheel's file name:

- ``check``: the portable wheel (``ucag._core`` alone, linked by zig) must need no glibc
  newer than 2.17 and carry the manylinux2014 tag; the tch wheel must hold ``ucag._tch`` and
  be tagged with exactly the policy its symbols need (lower breaks old systems at import,
  higher turns away systems it would run on);
- ``retag``: renames a wheel built with ``--compatibility linux`` to the manylinux tag its
  symbols need, rewriting its WHEEL tags and RECORD (maturin cannot tag a wheel whose
  libtorch dependency no manylinux policy whitelists; ``./dev wheel`` builds the tch wheel
  so and retags it).

Used by ``./dev wheel`` and the release workflow; needs pyelftools and auditwheel (the
development requirements), not the build environment of an sdist.

    python build_backend/wheel_check.py check --portable P.whl --tch T.whl
    python build_backend/wheel_check.py retag T.whl
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import sys
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from elftools.elf.elffile import ELFFile

#: The glibc a wheel tagged manylinux2014 may need at most.
MANYLINUX2014_GLIBC = (2, 17)
#: Legacy manylinux tags and the glibc each stands for (PEP 600).
LEGACY_TAGS = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
#: ELF machine -> wheel architecture.
ARCHES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}


@dataclass(frozen=True)
class ModuleNeeds:
    """What one shared object in a wheel needs."""

    name: str
    arch: str
    versions: dict[str, set[str]]  # library -> version names, e.g. libc.so.6 -> {GLIBC_2.34}
    policy: str  # the oldest manylinux policy that allows every version, e.g. manylinux_2_17
    glibc: tuple[int, int]

    def newest(self, prefix: str) -> str:
        """The newest version of a prefix (GLIBC, GLIBCXX, ...) it needs, '-' for none."""
        found = [v.split("_", 1)[1] for names in self.versions.values() for v in names if v.startswith(prefix + "_")]
        found = [v for v in found if re.fullmatch(r"[0-9.]+", v)]
        return max(found, key=lambda v: tuple(int(p) for p in v.split("."))) if found else "-"


def _policies() -> list[dict]:
    """auditwheel's manylinux policies, most compatible first ('linux' left out)."""
    text = resources.files("auditwheel.policy").joinpath("manylinux-policy.json").read_text(encoding="utf-8")
    return sorted((p for p in json.loads(text) if p["name"] != "linux"), key=lambda p: -p["priority"])


def _glibc_of(policy: str) -> tuple[int, int]:
    major, minor = re.fullmatch(r"manylinux_(\d+)_(\d+)", policy).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def symbol_versions(data: bytes) -> tuple[str, dict[str, set[str]]]:
    """The architecture of an ELF shared object and the symbol versions it needs, by library."""
    elf = ELFFile(io.BytesIO(data))
    arch = ARCHES.get(elf["e_machine"], elf["e_machine"])
    needs: dict[str, set[str]] = {}
    section = elf.get_section_by_name(".gnu.version_r")
    if section is not None:
        for verneed, auxiliaries in section.iter_versions():
            needs.setdefault(verneed.name, set()).update(aux.name for aux in auxiliaries)
    return arch, needs


def module_needs(name: str, data: bytes) -> ModuleNeeds:
    """What the shared object ``data`` needs, and the oldest manylinux policy allowing it."""
    arch, versions = symbol_versions(data)
    policies = _policies()
    # the version prefixes the policies govern (GLIBC, GLIBCXX, CXXABI, GCC, ZLIB, ...);
    # others (a library's own versions) constrain no tag
    governed = {prefix for p in policies for table in p["symbol_versions"].values() for prefix in table}
    needed = [
        v.split("_", 1) for names in versions.values() for v in names if "_" in v and v.split("_", 1)[0] in governed
    ]
    for policy in policies:
        allowed = policy["symbol_versions"].get(arch)
        if allowed and all(version in allowed.get(prefix, ()) for prefix, version in needed):
            return ModuleNeeds(name, arch, versions, policy["name"], _glibc_of(policy["name"]))
    raise ValueError(
        f"{name}: no manylinux policy for {arch} allows the symbol versions it needs: {sorted(set().union(*versions.values()))}"
    )


def wheel_modules(wheel: Path) -> list[ModuleNeeds]:
    """Every shared object in the wheel, with what it needs."""
    with zipfile.ZipFile(wheel) as archive:
        return [module_needs(n, archive.read(n)) for n in archive.namelist() if re.search(r"\.so(\.\d+)*$", n)]


def platform_tags(wheel: Path) -> list[str]:
    """The platform tags in a wheel's file name, e.g. ['manylinux2014_x86_64', 'manylinux_2_17_x86_64']."""
    parts = wheel.name.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"{wheel.name}: not a wheel file name (name-version-python-abi-platform.whl)")
    return parts[-1].split(".")


def claimed_glibc(wheel: Path) -> tuple[int, int] | None:
    """The oldest glibc the wheel's tags claim to run on; None when no tag is a manylinux one."""
    claims = []
    for tag in platform_tags(wheel):
        legacy = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_\w+", tag)
        modern = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag)
        if legacy:
            claims.append(LEGACY_TAGS[legacy.group(1)])
        elif modern:
            claims.append((int(modern.group(1)), int(modern.group(2))))
    return min(claims) if claims else None


def _glibc_text(version: tuple[int, int] | None) -> str:
    return "none" if version is None else f"{version[0]}.{version[1]}"


def check_portable(wheel: Path) -> list[str]:
    """Problems of the portable wheel: ``ucag._core`` alone, glibc <= 2.17, tagged manylinux2014."""
    problems = []
    modules = wheel_modules(wheel)
    names = [m.name for m in modules]
    if not any(n.startswith("ucag/_core") for n in names):
        problems.append(f"{wheel.name}: no ucag/_core module")
    if any(n.startswith("ucag/_tch") for n in names):
        problems.append(f"{wheel.name}: holds the tch module; the portable wheel must not (it links libtorch's C++)")
    for module in modules:
        if module.glibc > MANYLINUX2014_GLIBC:
            problems.append(
                f"{wheel.name}: {module.name} needs {module.policy} (GLIBC {module.newest('GLIBC')}), newer than manylinux2014's glibc 2.17"
            )
    if claimed_glibc(wheel) != MANYLINUX2014_GLIBC:
        problems.append(f"{wheel.name}: tagged for glibc {_glibc_text(claimed_glibc(wheel))}, not manylinux2014 (2.17)")
    return problems


def needed_policy(modules: list[ModuleNeeds]) -> tuple[str, tuple[int, int]]:
    """The manylinux policy all of ``modules`` need together, and its glibc."""
    newest = max(modules, key=lambda m: m.glibc)
    return newest.policy, newest.glibc


def check_tch(wheel: Path) -> list[str]:
    """Problems of the tch wheel: it holds ``ucag._tch`` and is tagged with exactly what its symbols need."""
    modules = wheel_modules(wheel)
    problems = []
    if not any(m.name.startswith("ucag/_tch") for m in modules):
        problems.append(f"{wheel.name}: no ucag/_tch module")
    if not modules:
        return problems + [f"{wheel.name}: no shared objects"]
    policy, needed = needed_policy(modules)
    claimed = claimed_glibc(wheel)
    if claimed is None or claimed < needed:
        problems.append(
            f"{wheel.name}: tagged for glibc {_glibc_text(claimed)}, but its modules need {policy}: it would fail to import there"
        )
    elif claimed > needed:
        problems.append(
            f"{wheel.name}: tagged for glibc {_glibc_text(claimed)}, but its modules need only {policy}: the tag turns away systems it runs on"
        )
    return problems


def retag(wheel: Path) -> Path:
    """Rename ``wheel`` (tagged ``linux_ARCH``) to the manylinux tag its modules need; returns the new path."""
    modules = wheel_modules(wheel)
    if not modules:
        raise ValueError(f"{wheel.name}: no shared objects to read a tag from")
    policy, _ = needed_policy(modules)
    arches = {m.arch for m in modules}
    if len(arches) != 1:
        raise ValueError(f"{wheel.name}: modules for several architectures: {sorted(arches)}")
    new_platform = f"{policy}_{arches.pop()}"
    parts = wheel.name.removesuffix(".whl").split("-")
    old_tags = [
        f"{p}-{a}-{plat}" for p in parts[-3].split(".") for a in parts[-2].split(".") for plat in parts[-1].split(".")
    ]
    new_tags = [f"{p}-{a}-{new_platform}" for p in parts[-3].split(".") for a in parts[-2].split(".")]
    target = wheel.with_name("-".join(parts[:-1] + [new_platform]) + ".whl")
    with zipfile.ZipFile(wheel) as src:
        names = src.namelist()
        wheel_info = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        lines = [line for line in src.read(wheel_info).decode().splitlines() if not line.startswith("Tag: ")]
        missing = [t for t in old_tags if f"Tag: {t}" not in src.read(wheel_info).decode().splitlines()]
        if missing:
            raise ValueError(f"{wheel.name}: its WHEEL file lacks the tags of its name: {missing}")
        new_info = ("\n".join(lines + [f"Tag: {t}" for t in new_tags]) + "\n").encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(new_info).digest()).rstrip(b"=").decode()
        record = [
            f"{wheel_info},sha256={digest},{len(new_info)}" if line.startswith(wheel_info + ",") else line
            for line in src.read(record_name).decode().splitlines()
        ]
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
            for item in src.infolist():
                if item.filename == wheel_info:
                    out.writestr(item, new_info)
                elif item.filename == record_name:
                    out.writestr(item, "\n".join(record) + "\n")
                else:
                    out.writestr(item, src.read(item.filename))
    if target != wheel:
        wheel.unlink()
    return target


def describe(wheel: Path) -> str:
    """One line per module: what it needs, and the tag of the wheel."""
    lines = [f"{wheel.name} (claims glibc {_glibc_text(claimed_glibc(wheel))}):"]
    for m in wheel_modules(wheel):
        lines.append(
            f"  {m.name}: GLIBC {m.newest('GLIBC')}, GLIBCXX {m.newest('GLIBCXX')}, CXXABI {m.newest('CXXABI')}, GCC {m.newest('GCC')} -> {m.policy}_{m.arch}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wheel_check", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check the tags of the portable and the tch wheel against their symbols")
    check.add_argument("--portable", type=Path, action="append", default=[], help="a portable wheel (repeatable)")
    check.add_argument("--tch", type=Path, action="append", default=[], help="a wheel with the tch module (repeatable)")
    tag = commands.add_parser("retag", help="rename a linux_ARCH wheel to the manylinux tag its symbols need")
    tag.add_argument("wheel", type=Path)
    args = parser.parse_args(argv)
    if args.command == "retag":
        print(retag(args.wheel))
        return 0
    problems = []
    for wheel in args.portable + args.tch:
        print(describe(wheel))
    for wheel in args.portable:
        problems += check_portable(wheel)
    for wheel in args.tch:
        problems += check_tch(wheel)
    for problem in problems:
        print(f"wheel_check: {problem}", file=sys.stderr)
    if not problems:
        print(f"wheel_check: {len(args.portable) + len(args.tch)} wheels tagged as their symbols need")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
