"""docker-compose.yml is valid Compose and wires Engram up as the README says.

No Docker engine runs in CI, so the file is checked against the Compose specification's JSON
schema (shipped inside the docker-compose 1.29.2 wheel) plus Engram's own expectations.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"postgresql", "temporal", "temporal-ui", "gateway", "worker"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def compose_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    where = tmp_path_factory.mktemp("compose-schema")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(where),
            "docker-compose==1.29.2",
        ],
        check=True,
    )
    [wheel] = where.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        schema: dict[str, Any] = json.loads(archive.read("compose/config/compose_spec.json"))
    return schema


def test_matches_the_compose_specification(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    jsonschema.Draft201909Validator(compose_schema).validate(compose)


def test_schema_check_catches_mistakes(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["healthcheck"]["interval"] = ["not", "a", "duration"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(compose_schema).validate(broken)


def test_services_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services and condition["condition"] == "service_healthy"
    assert services["temporal"]["environment"]["DB"].startswith("postgres")
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    for engine in ("gateway", "worker"):
        assert services[engine]["build"] == "."
        assert "temporal:7233" in services[engine]["command"]
    assert services["gateway"]["environment"]["ENGRAM_ADVERTISE_ADDRESS"] == "gateway:50051"
    assert "50051:50051" in services["gateway"]["ports"]


def test_dockerfile_runs_the_engine() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    assert 'ENTRYPOINT ["engram"]' in dockerfile


def test_transcripts_go_to_the_postgresql_service(compose: dict[str, Any]) -> None:
    """Workers and gateways on any host share one transcript store: the PostgreSQL service, in a
    database the service's init script creates."""
    services = compose["services"]
    urls = {services[name]["environment"]["ENGRAM_TRANSCRIPT_DB"] for name in ("worker", "gateway")}
    [url] = urls
    default = url.removeprefix("${ENGRAM_TRANSCRIPT_DB:-").removesuffix("}")
    assert default.startswith("postgresql://") and "@postgresql:5432/" in default
    database = default.rsplit("/", 1)[1]
    [init] = [
        v
        for v in services["postgresql"]["volumes"]
        if v.endswith("/docker-entrypoint-initdb.d/engram.sql:ro")
    ]
    script = (ROOT / init.split(":", 1)[0]).read_text()
    assert f"CREATE DATABASE {database};" in script
    for name in ("worker", "gateway"):
        assert services[name]["depends_on"]["postgresql"]["condition"] == "service_healthy"
