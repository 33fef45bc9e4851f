"""The release workflow (.github/workflows/release.yml) cannot run here: no GitHub runners.
This test holds it to what docs/platforms.md promises: it parses, it says it is on paper,
and it has a job for every wheel of the platform matrix, built for the right target, each
wheel smoke-tested next to the newest torch of its platform before anything is published."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"

#: job -> (the Rust target it builds, True where it is the portable core alone)
WHEEL_JOBS = {
    "linux-x86_64-tch": ("x86_64-unknown-linux-gnu", False),
    "linux-x86_64-portable": ("x86_64-unknown-linux-gnu", True),
    "linux-aarch64": ("aarch64-unknown-linux-gnu", True),
    "macos-arm64": ("aarch64-apple-darwin", True),
    "macos-x86_64": ("x86_64-apple-darwin", True),
    "windows-x86_64": ("x86_64-pc-windows-msvc", True),
}


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _steps_text(job: dict) -> str:
    return "\n".join(
        str(step.get("run", "")) + str(step.get("with", "")) + str(step.get("env", "")) for step in job["steps"]
    )


def test_it_parses_and_says_it_has_never_run(workflow):
    header = WORKFLOW.read_text(encoding="utf-8").split("\nname:")[0]
    assert "ON PAPER" in header and "never run" in header
    # YAML 1.1 reads the key `on` as True
    triggers = workflow.get("on", workflow.get(True))
    assert triggers["push"]["tags"] == ["v*"]
    assert set(workflow["jobs"]) == set(WHEEL_JOBS) | {"sdist", "smoke", "publish"}


@pytest.mark.parametrize("name", sorted(WHEEL_JOBS))
def test_each_wheel_job_builds_its_target(workflow, name):
    job = workflow["jobs"][name]
    target, portable = WHEEL_JOBS[name]
    text = _steps_text(job)
    maturin = [s for s in job["steps"] if str(s.get("uses", "")).startswith("PyO3/maturin-action@")]
    if portable:
        assert len(maturin) == 1 and maturin[0]["with"]["target"] == target
        assert "--release" in maturin[0]["with"]["args"]
        assert "UCAG_BUILD_TCH=require" not in text
        if target.endswith("linux-gnu"):
            # zig links against glibc 2.17's symbols; the check reads them back
            assert "--zig --compatibility manylinux2014" in maturin[0]["with"]["args"]
            assert "wheel_check.py check --portable" in text
    else:
        assert "UCAG_BUILD_TCH=require" in text and "--no-build-isolation" in text
        assert "wheel_check.py retag" in text and "wheel_check.py check --tch" in text
        assert job["container"].startswith("quay.io/pypa/manylinux_")
    assert any(str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in job["steps"])


def test_every_wheel_is_smoke_tested_before_publishing(workflow):
    jobs = workflow["jobs"]
    smoke = jobs["smoke"]
    assert set(smoke["needs"]) == set(WHEEL_JOBS)
    entries = smoke["strategy"]["matrix"]["include"]
    uploaded = {name: job["steps"][-1]["with"]["name"] for name, job in jobs.items() if name in WHEEL_JOBS}
    tested = {e["wheel"] for e in entries}
    assert tested == set(uploaded.values())
    # only the tch wheel next to torch 2.11 runs the tch kernels
    assert {(e["wheel"], e["torch"]) for e in entries if e["kernels"] == "tch"} == {
        ("wheel-linux-x86_64-tch", "torch==2.11.*")
    }
    assert "smoke_wheel.py" in _steps_text(smoke)
    assert set(jobs["publish"]["needs"]) == {"smoke", "sdist"}
    assert (ROOT / "tests" / "smoke_wheel.py").exists()


DOCS_WORKFLOW = ROOT / ".github" / "workflows" / "docs.yml"


def test_docs_workflow_builds_strict_and_deploys_to_pages_on_a_tag():
    text = DOCS_WORKFLOW.read_text(encoding="utf-8")
    header = text.split("\nname:")[0]
    assert "ON PAPER" in header and "never run" in header
    docs = yaml.safe_load(text)
    triggers = docs.get("on", docs.get(True))
    assert triggers["push"]["tags"] == ["v*"]
    build = _steps_text(docs["jobs"]["build"])
    # the same strict build as ./dev docs, from a source install with the docs extra
    assert "mkdocs build --strict --site-dir site" in build
    assert ".[docs," in build
    assert "upload-pages-artifact" in str([step.get("uses") for step in docs["jobs"]["build"]["steps"]])
    deploy = docs["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert any(str(step.get("uses", "")).startswith("actions/deploy-pages") for step in deploy["steps"])
    assert docs["permissions"]["pages"] == "write"
    dev = (ROOT / "dev").read_text(encoding="utf-8")
    assert "mkdocs build --strict --site-dir site" in dev
