"""The Dockerfile, checked without a Docker engine (none runs here; the kind e2e builds it).

Structural lint: the instructions are parsed (line continuations joined), stages found, and
the promises checked: multi-stage, python:3.12-slim, a wheel built in the builder and
pip-installed with the operator extra in the runtime stage, no compilers there, a numeric
non-root user, /tmp and /spill as volumes, `memkube` as the exec-form entrypoint.
And the build step itself: the wheel is built from exactly the files .dockerignore lets into
the build context, and carries both packages, the CRD and the console scripts.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from chartcases import ROOT

DOCKERFILE = ROOT / "Dockerfile"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "clang", "python3-dev", "libc6-dev")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and the stages, each a list of (KEYWORD, arguments)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            base = parts[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value).replace("$" + name, value)
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=alias))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def test_two_stages_on_python_312_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert all(stage.base == "python:3.12-slim" for stage in stages)
    assert stages[0].name == "builder"


def test_builder_makes_wheels_and_runtime_installs_them(stages: list[Stage]) -> None:
    builder, runtime = stages[0], stages[-1]
    assert any("pip wheel" in run and '".[operator]"' in run for run in builder.all("RUN"))
    installs = [run for run in runtime.all("RUN") if "pip install" in run]
    assert len(installs) == 1
    assert "--no-index" in installs[0] and '"memkube[operator]"' in installs[0]
    assert "from=builder" in installs[0] and "/wheels" in installs[0]
    # No source tree in the runtime stage: nothing copied in, only the wheels mounted.
    assert runtime.all("COPY") == [] and runtime.all("ADD") == []


def test_runtime_stage_has_no_build_tools(stages: list[Stage]) -> None:
    runtime = stages[-1]
    text = " ".join(args for _, args in runtime.instructions)
    for tool in BUILD_TOOLS:
        assert tool not in text, tool
    assert "apt-get install" not in text


def test_runtime_runs_as_numeric_non_root_user(stages: list[Stage]) -> None:
    (user,) = stages[-1].all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit()
    assert int(uid) != 0 and int(gid) != 0
    # The user is declared after every RUN, so nothing after it needs root.
    keywords = [kw for kw, _ in stages[-1].instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_volumes_and_entrypoint(stages: list[Stage]) -> None:
    runtime = stages[-1]
    (volume,) = runtime.all("VOLUME")
    assert set(json.loads(volume)) == {"/tmp", "/spill"}
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["memkube"]  # exec form: signals reach memkube itself
    assert any("chown 1000:1000 /spill" in run for run in runtime.all("RUN"))


def dockerignored_context(source: Path, destination: Path) -> list[str]:
    """Copy what .dockerignore lets into a build context; return the relative paths copied.

    Docker's rules as far as our .dockerignore uses them: patterns in order, the last one
    that matches a path or one of its parent directories decides, `!` re-includes, and a
    leading `**/` matches at any depth.
    """
    patterns = [
        line.strip()
        for line in (source / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern.lstrip("!").rstrip("/")
            if body.startswith("**/"):
                hit = any(fnmatch.fnmatch(part, body[3:]) for part in parts)
            else:
                hit = any(fnmatch.fnmatch(prefix, body) for prefix in prefixes)
            if hit:
                verdict = not negate
        return verdict

    copied = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if path.is_file() and not rel.startswith((".git/", ".venv/")) and not excluded(rel):
            target = destination / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied.append(rel)
    return copied


@pytest.mark.slow
def test_wheel_builds_from_the_docker_context(tmp_path: Path) -> None:
    if not (ROOT / "README.md").exists():
        pytest.skip("README.md (pyproject's readme, copied by the Dockerfile) does not exist yet")
    context = tmp_path / "context"
    copied = dockerignored_context(ROOT, context)
    assert "pyproject.toml" in copied
    assert not any(p.startswith(("tests/", "charts/", "deploy/", ".venv/")) for p in copied)
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in copied)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        check=True,
        timeout=180,
    )
    (wheel,) = (tmp_path / "dist").glob("memkube-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "memkube/cli.py" in names
    _runs_from_the_installed_wheel(wheel, tmp_path)
    assert "memkube_operator/crds/workerpools.memkube.dev.yaml" in names
    assert "memkube = memkube.cli:main" in scripts
    assert "operator = memkube_operator.cli:main" in scripts
    assert "Provides-Extra: operator" in metadata


def _runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    """Installed alone (dependencies from this venv, no source tree on the path), the wheel
    gives the image's entrypoint: `memkube` with its roles, and `memkube operator`."""
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    env = {"PYTHONPATH": str(site), "PATH": os.environ["PATH"]}
    memkube = [sys.executable, str(site / "bin" / "memkube")]
    roles = subprocess.run(
        [*memkube, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert "scheduler" in roles and "worker" in roles and "operator" in roles
    crd = subprocess.run(
        [*memkube, "operator", "crd"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    source = ROOT / "operator" / "memkube_operator" / "crds" / "workerpools.memkube.dev.yaml"
    assert crd == source.read_text()
