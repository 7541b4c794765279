"""Deployment files and behaviour: every setting documented, the compose file and Kubernetes
manifests valid (with the commands docs/deploy.md shows), the image's shape, and a graceful
shutdown that lets in-flight requests finish."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sellerdesk.config import Settings
from tests.conftest import AppFactory
from tests.factories import register
from tests.live_server import Server, cli, environment

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
# Variables read by libraries, documented beside the settings but not settings themselves.
LIBRARY_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR"}
# uvicorn re-raises the signal once it has shut down, so the exit status says "SIGTERM".
STOPPED = {0, -signal.SIGTERM}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a container must bind, checked below


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


# --------------------------------------------------------------------------- settings docs


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def readme_setting_names() -> set[str]:
    """Names in backticks in the first column of the README's configuration table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    names: set[str] = set()
    for row in rows[2:]:  # header and separator
        first = row.split("|")[1]
        names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first))
    return names


def test_every_setting_is_in_env_example_and_nothing_else_is() -> None:
    settings = set(Settings.model_fields)
    listed = env_example_names()
    assert settings - listed == set(), "settings missing from .env.example"
    assert listed - settings - LIBRARY_VARIABLES == set(), ".env.example names no such setting"


def test_every_setting_has_a_row_in_the_readme_configuration_table() -> None:
    settings = set(Settings.model_fields)
    documented = readme_setting_names()
    assert settings - documented == set(), "settings missing from the README's table"
    assert documented - settings == set(), "the README's table documents no such setting"


def test_env_example_loads_as_production_settings_once_the_secret_is_set(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    text = (ROOT / ".env.example").read_text()
    env_file.write_text(text.replace("SECRET_KEY=\n", f"SECRET_KEY={'s' * 48}\n"))
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.ENVIRONMENT == "production"
    assert settings.DATABASE_URL.startswith("postgresql+asyncpg://")
    with pytest.raises(ValueError, match="SECRET_KEY"):
        (tmp_path / "empty.env").write_text(text)
        Settings(_env_file=tmp_path / "empty.env")  # type: ignore[call-arg]


# --------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


def test_the_compose_file_validates_against_the_compose_spec() -> None:
    checked = run(
        str(BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        "deploy/docker-compose.yml",
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_api_waits_for_the_one_shot_migration_and_runs_replicas_behind_the_proxy() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "beat", "proxy"}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"

    assert services["migrate"]["command"] == ["sellerdesk", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for role in ("api", "worker", "beat"):
        depends = services[role]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert services[role]["environment"]["JOBS_ENABLED"] == "false"
    assert services["api"]["command"][:2] == ["sellerdesk", "serve"]
    assert ALL_INTERFACES in services["api"]["command"]
    assert str(services["api"]["deploy"]["replicas"]).endswith(("2}", "2"))
    assert "ports" not in services["api"]  # reached through the proxy only
    assert services["proxy"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["worker"]["command"] == ["sellerdesk", "worker"]
    assert services["beat"]["command"] == ["sellerdesk", "beat"]
    assert services["beat"]["deploy"]["replicas"] == 1
    for role in ("migrate", "worker", "beat"):  # the image's HTTP check means nothing there
        assert services[role]["healthcheck"] == {"disable": True}


def test_the_proxy_forwards_the_client_address_and_keeps_metrics_internal() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    assert "server api:8000 resolve;" in conf
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    assert re.search(r"location = /metrics \{\s*return 404;", conf)
    assert "client_max_body_size 10m;" in conf
    volume = compose()["services"]["proxy"]["volumes"][0]
    assert volume.startswith("./nginx.conf:")


# --------------------------------------------------------------------------- Kubernetes


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


def test_the_kubernetes_manifests_validate_strictly() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (DEPLOY / "k8s").rglob("*.yaml"))
    checked = run(str(BIN / "kubernetes-validate"), "--strict", "--quiet", *files)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_kubernetes_set_has_api_worker_one_beat_a_migrate_job_and_probes() -> None:
    found = manifests()
    assert set(found) >= {
        ("ConfigMap", "sellerdesk-config"),
        ("Job", "sellerdesk-migrate"),
        ("Deployment", "sellerdesk-api"),
        ("Service", "sellerdesk-api"),
        ("Deployment", "sellerdesk-worker"),
        ("Deployment", "sellerdesk-beat"),
    }
    assert ("Secret", "sellerdesk-secrets") not in found  # only an example, never applied

    def container(kind: str, name: str) -> dict[str, Any]:
        spec = found[(kind, name)]["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        [only] = spec["containers"]
        refs = [next(iter(source.values()))["name"] for source in only["envFrom"]]
        assert refs == ["sellerdesk-config", "sellerdesk-secrets"]
        return dict(only)

    api = container("Deployment", "sellerdesk-api")
    assert api["command"] == ["sellerdesk", "serve", "--host", ALL_INTERFACES, "--port", "8000"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container("Job", "sellerdesk-migrate")["command"] == ["sellerdesk", "migrate"]
    assert container("Deployment", "sellerdesk-worker")["command"] == ["sellerdesk", "worker"]
    assert container("Deployment", "sellerdesk-beat")["command"] == ["sellerdesk", "beat"]
    beat = found[("Deployment", "sellerdesk-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"

    # The shutdown budget: preStop pause + GRACEFUL_SHUTDOWN_SECONDS < the kill timeout.
    config = found[("ConfigMap", "sellerdesk-config")]["data"]
    assert config["JOBS_ENABLED"] == "false"
    pod = found[("Deployment", "sellerdesk-api")]["spec"]["template"]["spec"]
    pause = int(api["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pause + int(config["GRACEFUL_SHUTDOWN_SECONDS"]) < pod["terminationGracePeriodSeconds"]
    assert set(config) <= set(Settings.model_fields) | LIBRARY_VARIABLES


# --------------------------------------------------------------------------- the image


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into stages."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("ARG"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(re.sub(r"\s+", " ", line))
    return stages


def test_the_image_is_multi_stage_slim_non_root_with_a_healthcheck() -> None:
    builder, runtime = dockerfile_stages()
    assert builder[0].endswith(" AS builder") and "-slim" in builder[0]
    assert any("pip wheel" in step and "--constraint requirements.lock" in step for step in builder)
    assert runtime[0].endswith(" AS runtime") and "-slim" in runtime[0]
    assert not any("build-essential" in step for step in runtime)
    assert any("from=builder" in step and "--no-index" in step for step in runtime)
    users = [step.split()[1] for step in runtime if step.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    [healthcheck] = [step for step in runtime if step.startswith("HEALTHCHECK")]
    assert "http://127.0.0.1:8000/health" in healthcheck
    [cmd] = [step for step in runtime if step.startswith("CMD ")]
    assert json.loads(cmd[4:]) == [
        "sellerdesk",
        "serve",
        "--host",
        ALL_INTERFACES,
        "--port",
        "8000",
    ]
    assert "SELLERDESK_ROOT=/app" in " ".join(runtime)  # `sellerdesk migrate` finds alembic.ini


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "*.db", "tests"} <= set(ignored)
    for needed in ("src", "pyproject.toml", "requirements.lock", "migrations", "alembic.ini"):
        assert needed not in ignored


# --------------------------------------------------------------------------- graceful shutdown


async def _server_with_admin(tmp_path: Path, **settings: str) -> tuple[Server, bytes]:
    env = environment(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/shutdown.db", LOG_LEVEL="INFO", **settings
    )
    credentials = {"email": "ops@example.com", "password": "a long enough password"}
    await asyncio.to_thread(cli, env, "migrate")
    await asyncio.to_thread(
        cli,
        env,
        "create-admin",
        "--email",
        credentials["email"],
        "--password",
        "a long enough password",
    )
    server = Server(env)
    await server.wait_ready()
    return server, json.dumps(credentials).encode()


def _start_login(port: int, body: bytes) -> socket.socket:
    """Send a login's headers with `Expect: 100-continue` and wait for `100 Continue`: the
    request is then inside the route, reading its body: in flight."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    interim = sock.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: (\d+)", head)
        if length and len(body) >= int(length.group(1)):
            break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_sigterm_lets_an_in_flight_request_finish_then_closes_the_app(
    tmp_path: Path,
) -> None:
    server, body = await _server_with_admin(tmp_path, GRACEFUL_SHUTDOWN_SECONDS="20")
    try:
        sock = await asyncio.to_thread(_start_login, server.port, body)
        server.terminate()
        await server.wait_for_log("Waiting for connections to close")
        # Shutting down: no new connections, but the one in flight still gets its answer.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        sock.sendall(body)
        status, answer = await asyncio.to_thread(_read_response, sock)
        sock.close()
        assert status == 200 and answer["token_type"] == "bearer"
        assert await server.wait_exit() in STOPPED
        log = server.log
        assert log.index("Waiting for connections to close") < log.index('"app_stopped"')
    finally:
        server.stop()


async def test_a_request_that_never_ends_cannot_hold_shutdown_past_the_grace_period(
    tmp_path: Path,
) -> None:
    server, body = await _server_with_admin(tmp_path, GRACEFUL_SHUTDOWN_SECONDS="1")
    try:
        sock = await asyncio.to_thread(_start_login, server.port, body)
        server.terminate()  # and never send the body
        assert await server.wait_exit(within=20) in STOPPED
        assert '"app_stopped"' in server.log  # the engine and Redis were still closed
        sock.close()
    finally:
        server.stop()


# --------------------------------------------------------------------------- PgBouncer


@pytest.mark.postgres_only
async def test_statement_cache_size_0_turns_off_prepared_statement_caching(
    make_app: AppFactory,
) -> None:
    app = await make_app(DATABASE_STATEMENT_CACHE_SIZE=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        account = await register(c)
        for _ in range(3):  # the same statements again: nothing is cached, each is named anew
            me = await c.get("/api/v1/users/me", headers=account.headers)
            assert me.status_code == 200, me.text
        assert (await c.get("/api/v1/products")).status_code == 200
    async with app.state.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        adapted: Any = raw.dbapi_connection
        assert adapted._prepared_statement_cache is None  # SQLAlchemy's cache
        assert adapted._connection._stmt_cache.get_max_size() == 0  # asyncpg's own
        names = {adapted._prepared_statement_name_func() for _ in range(3)}
        assert len(names) == 3
