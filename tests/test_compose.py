"""docker-compose.yml is valid Compose and wires Engram up as the README says.

No Docker engine runs in CI, so the file is checked against the Compose specification's JSON
schema (shipped inside the docker-compose 1.29.2 wheel) plus Engram's own expectations.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from engram.cli import advertised as advertised_address
from engram.codec.keyring import keyring_from_env

ROOT = Path(__file__).resolve().parent.parent
# Set Temporal up and exit: the services after them wait for them to have succeeded.
ONE_SHOTS = {"temporal-schema", "temporal-namespace"}
SERVICES = {
    "postgresql",
    "temporal-schema",
    "temporal",
    "temporal-namespace",
    "temporal-ui",
    "gateway",
    "worker",
    "codec-server",
    "prometheus",
    "grafana",
    "jaeger",
}


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
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
        else:
            assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            )
            assert dependency in services and condition["condition"] == expected, name
    assert services["temporal"]["environment"]["DB"].startswith("postgres")
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    for engine in ("gateway", "worker"):
        assert services[engine]["build"] == "."
        assert "temporal:7233" in services[engine]["command"]
    assert "50051:50051" in services["gateway"]["ports"]


def test_temporal_is_set_up_by_its_own_release(compose: dict[str, Any]) -> None:
    """Temporal 1.32 (the release `engram dev` runs, and the first whose pinned workflows learn
    of a new current version, which versioned workers need), its schema brought up to date and
    the namespace created by the admin tools of that release, before the engine starts."""
    services = compose["services"]
    image, release = services["temporal"]["image"].split(":")
    assert image == "temporalio/server"
    assert tuple(int(n) for n in release.split(".")) >= (1, 32, 0)
    for one_shot, step in (("temporal-schema", "schema"), ("temporal-namespace", "namespace")):
        service = services[one_shot]
        assert service["image"] == f"temporalio/admin-tools:{release}"
        assert service["command"] == [step]
        [mount] = service["volumes"]
        script = (ROOT / mount.split(":")[0]).read_text()
        assert f"  {step}) {step} ;;" in script
    assert services["temporal"]["depends_on"]["temporal-schema"]
    assert services["temporal-namespace"]["depends_on"]["temporal"]
    database = services["temporal-schema"]["environment"]
    assert {k: services["temporal"]["environment"][k] for k in database} == database
    for engine in ("gateway", "worker"):
        assert "temporal-namespace" in services[engine]["depends_on"]


def test_each_gateway_advertises_its_own_address(compose: dict[str, Any]) -> None:
    """Replicas of the gateway service each get their turns' tokens: they advertise their own host
    names, and workers check the relay's certificate against the service's name."""
    services = compose["services"]
    advertised = services["gateway"]["environment"]["ENGRAM_ADVERTISE_ADDRESS"]
    assert advertised == "{hostname}:50051"
    assert advertised_address(advertised, 50051) == f"{socket.gethostname()}:50051"
    assert services["worker"]["environment"]["ENGRAM_RELAY_TLS_SERVER_NAME"] == "gateway"
    assert 'x509.DNSName("gateway")' in (ROOT / "deploy" / "make_secrets.py").read_text()


def test_temporal_dispatches_activities_eagerly(compose: dict[str, Any]) -> None:
    temporal = compose["services"]["temporal"]
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    [mount] = [v for v in temporal["volumes"] if v.split(":")[1] == f"/etc/temporal/{path}"]
    settings = yaml.safe_load((ROOT / mount.split(":")[0]).read_text())
    assert settings["system.enableActivityEagerExecution"] == [{"value": True}]


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


def test_runs_safe_by_default(compose: dict[str, Any]) -> None:
    """Keys, TLS and encryption: nothing starts without the secrets deploy/make_secrets.py makes,
    the gateway serves TLS (and its health probe checks it), workers share its relay secret and
    trust its certificate, and the Web UI reads payloads through the codec server."""
    services = compose["services"]
    for name in ("worker", "gateway"):
        env = services[name]["environment"]
        for secret in ("ENGRAM_RELAY_SECRET", "ENGRAM_ENCRYPTION_KEYS"):
            assert env[secret].startswith(f"${{{secret}:?"), (name, secret)
        assert "./deploy/secrets:/secrets:ro" in services[name]["volumes"]
    gateway = services["gateway"]["environment"]
    assert gateway["ENGRAM_GATEWAY_TLS_CERT"] == gateway["ENGRAM_PROBE_TLS_CA"]
    assert services["worker"]["environment"]["ENGRAM_RELAY_TLS_CA"] == "/secrets/gateway.crt"
    assert "--insecure-no-auth" not in services["gateway"]["command"]
    codec = services["codec-server"]
    assert codec["environment"]["ENGRAM_ENCRYPTION_KEYS"] == gateway["ENGRAM_ENCRYPTION_KEYS"]
    assert "8234" in services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"]
    script = (ROOT / "deploy" / "make_secrets.py").read_text()
    for name in ("ENGRAM_RELAY_SECRET", "ENGRAM_ENCRYPTION_KEYS", "ENGRAM_CODEC_SERVER_TOKEN"):
        assert name in script


@pytest.mark.e2e
def test_make_secrets_writes_what_compose_needs(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "make_secrets.py", tmp_path / "deploy")
    subprocess.run([sys.executable, "deploy/make_secrets.py"], cwd=tmp_path, check=True)
    env = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())
    assert set(env) == {
        "ENGRAM_RELAY_SECRET",
        "ENGRAM_ENCRYPTION_KEYS",
        "ENGRAM_CODEC_SERVER_TOKEN",
    }
    keyring = keyring_from_env({"ENGRAM_ENCRYPTION_KEYS": env["ENGRAM_ENCRYPTION_KEYS"]})
    assert keyring is not None
    certificate = (tmp_path / "deploy" / "secrets" / "gateway.crt").read_bytes()
    assert b"BEGIN CERTIFICATE" in certificate
