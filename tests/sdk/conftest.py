"""Fixtures for the official-SDK end-to-end suite.

The suite drives the real release binary named by ``GPDIAG_BIN`` with the
unmodified official Python SDK (``alibabacloud-gpdb20160503`` on the Tea
OpenAPI core), in both of its signing modes:

* ``acs3`` - the SDK default, ACS3-HMAC-SHA256 (``do_request``);
* ``v2``   - ``Config.signature_algorithm='v2'``, signature v1 HMAC-SHA1
             (``do_rpcrequest``).

Run:  GPDIAG_BIN=target/release/gpdiag .venv/bin/python -m pytest -q tests/sdk
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
import requests

from alibabacloud_gpdb20160503.client import Client as GpdbClient
from alibabacloud_tea_openapi import exceptions as tea_exceptions
from alibabacloud_tea_openapi.models import Config as TeaConfig

# The SDK (requests) honours proxy variables; everything here is loopback.
for _var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

REGION = "cn-hangzhou"
MODES = ("acs3", "v2")

HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# ---------------------------------------------------------------------------------------------
# World definition (written into every server's config)
# ---------------------------------------------------------------------------------------------

CAROL_SECRET_ENV = "GPDIAG_SDKTEST_CAROL_SECRET"

ACCOUNTS: Dict[str, Dict[str, str]] = {
    "alice": {"access_key_id": "LTAIalice0000001", "access_key_secret": "alice-secret-6f1d2c9a7b"},
    "bob": {"access_key_id": "LTAIbob000000001", "access_key_secret": "bob-secret-0a9e8d7c6b"},
    # carol's secret is given to the server as "env:VAR" (config contract).
    "carol": {"access_key_id": "LTAIcarol0000001", "access_key_secret": "carol-secret-from-env-4242",
              "config_secret": f"env:{CAROL_SECRET_ENV}"},
}

OK_CORE = "mm.v6.3.10.1-202207141918"


def _inst(id_, account, mode="StorageElastic", status="Running", core=OK_CORE, engine="6.0",
          description=None, region=REGION):
    return {
        "id": id_,
        "account": account,
        "region": region,
        "engine_version": engine,
        "core_version": core,
        "mode": mode,
        "status": status,
        "description": description if description is not None else f"sdk test instance {id_}",
    }


INSTANCES: List[Dict[str, str]] = [
    # The instance every diagnosis test uses: exactly the documented minimum (V6.3.10.1), storage-elastic.
    _inst("gp-alice-ok", "alice", description="alice primary (storage elastic, 6.3.10.1)"),
    _inst("gp-alice-ok2", "alice", core="mm.v6.3.11.2-202311021500"),
    _inst("gp-alice-v7", "alice", core="mm.v7.0.1.0-202312011200", engine="7.0", status="Creating"),
    # Too old for diagnosis download (the brief's plain "6.3.9.0" form) and one just below the boundary.
    _inst("gp-alice-old", "alice", core="6.3.9.0"),
    _inst("gp-alice-old2", "alice", core="mm.v6.3.10.0-202206011200"),
    # Wrong storage mode for diagnosis download.
    _inst("gp-alice-classic", "alice", mode="Classic"),
    _inst("gp-alice-serverless", "alice", mode="Serverless", status="Creating"),
    _inst("gp-alice-reboot", "alice", status="Rebooting", description="rebooting one"),
]
# Bulk instances so that paging with PageSize 30 has a second page.
for _i in range(1, 33):
    INSTANCES.append(_inst(f"gp-alice-bulk-{_i:03d}", "alice",
                           status=("Running", "Creating", "Running", "Rebooting")[_i % 4]))
INSTANCES.append(_inst("gp-bob-ok", "bob", description="bob's only instance"))
INSTANCES.append(_inst("gp-bob-classic", "bob", mode="Classic", status="Creating"))

INSTANCES_BY_ID = {i["id"]: i for i in INSTANCES}


def instances_of(account: str) -> List[Dict[str, str]]:
    return [i for i in INSTANCES if i["account"] == account]


# ---------------------------------------------------------------------------------------------
# Server process management
# ---------------------------------------------------------------------------------------------

def _toml_str(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes for this ASCII data.
    return json.dumps(s)


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# Where test servers keep their state: `sqlite` (a file in each server's directory) or
# `postgres` (a fresh database for each server on the server GPDIAG_TEST_PG_URL names);
# scripts/test runs the suite with each.
STORAGE = os.environ.get("GPDIAG_SDK_STORAGE", "sqlite")
PSQL = "/usr/lib/postgresql/15/bin/psql"


def storage_url(workdir: Path) -> str:
    if STORAGE == "sqlite":
        return "sqlite://" + str(workdir / "gpdiag.db")
    if STORAGE != "postgres":
        pytest.fail(f"GPDIAG_SDK_STORAGE={STORAGE!r}: use sqlite or postgres", pytrace=False)
    base = os.environ.get("GPDIAG_TEST_PG_URL")
    if not base:
        pytest.fail("GPDIAG_SDK_STORAGE=postgres needs GPDIAG_TEST_PG_URL (scripts/test sets it)",
                    pytrace=False)
    name = "gpdiag_sdk_" + uuid.uuid4().hex
    made = subprocess.run([PSQL, base, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "-c", f"CREATE DATABASE {name}"], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.fail(f"cannot create database {name}: {made.stderr}", pytrace=False)
    return urllib.parse.urlsplit(base)._replace(path="/" + name).geturl()


def render_config(port: int, workdir: Path, calls_per_second: int = 1000) -> str:
    lines = [
        "[server]",
        f"listen = {_toml_str(f'127.0.0.1:{port}')}",
        f"region = {_toml_str(REGION)}",
        "",
        "[storage]",
        f"url = {_toml_str(storage_url(workdir))}",
        "",
        "[objects]",
        f"url = {_toml_str('file://' + str(workdir / 'objects'))}",
        "",
        "[limits]",
        f"calls_per_second = {int(calls_per_second)}",
        "",
    ]
    for name, acc in ACCOUNTS.items():
        lines += [
            "[[accounts]]",
            f"name = {_toml_str(name)}",
            f"access_key_id = {_toml_str(acc['access_key_id'])}",
            f"access_key_secret = {_toml_str(acc.get('config_secret', acc['access_key_secret']))}",
            "",
        ]
    for inst in INSTANCES:
        lines += [
            "[[instances]]",
            f"id = {_toml_str(inst['id'])}",
            f"account = {_toml_str(inst['account'])}",
            f"region = {_toml_str(inst['region'])}",
            f"engine_version = {_toml_str(inst['engine_version'])}",
            f"core_version = {_toml_str(inst['core_version'])}",
            f"mode = {_toml_str(inst['mode'])}",
            f"status = {_toml_str(inst['status'])}",
            f"description = {_toml_str(inst['description'])}",
            "",
        ]
    return "\n".join(lines)


def gpdiag_bin() -> str:
    b = os.environ.get("GPDIAG_BIN")
    if not b:
        pytest.fail("GPDIAG_BIN is not set: point it at the gpdiag release binary "
                    "(e.g. GPDIAG_BIN=target/release/gpdiag)", pytrace=False)
    p = Path(b)
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(f"GPDIAG_BIN={b!r} is not an executable file", pytrace=False)
    return str(p.resolve())


def server_env() -> Dict[str, str]:
    env = dict(os.environ)
    env[CAROL_SECRET_ENV] = ACCOUNTS["carol"]["access_key_secret"]
    return env


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        data = path.read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return data[-limit:]


@dataclass
class GpdiagServer:
    binary: str
    workdir: Path
    port: int
    config_path: Path
    stderr_path: Path
    stdout_path: Path
    proc: Optional[subprocess.Popen] = None
    exit_code: Optional[int] = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return _tail(self.stderr_path)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "GpdiagServer":
        self.stdout_f = open(self.stdout_path, "wb")
        self.stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=self.stdout_f, stderr=self.stderr_f,
            env=server_env(), cwd=str(self.workdir),
        )
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        sess = requests.Session()
        sess.trust_env = False
        last = "no answer yet"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail(f"gpdiag serve exited with code {rc} before becoming healthy.\n"
                            f"--- stderr ---\n{self.stderr()}", pytrace=False)
            try:
                r = sess.get(self.base_url + "/healthz", timeout=1)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]!r}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        self._kill()
        pytest.fail(f"gpdiag serve on port {self.port} did not answer GET /healthz with 200 "
                    f"within {HEALTH_TIMEOUT_S:.0f}s (last: {last}).\n--- stderr ---\n{self.stderr()}",
                    pytrace=False)

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        """SIGTERM, then insist on exit within STOP_TIMEOUT_S."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            self.proc = None
            pytest.fail(f"gpdiag serve (port {self.port}) had already exited with code {rc} before "
                        f"the test session stopped it.\n--- stderr ---\n{self.stderr()}", pytrace=False)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill()
            self.proc = None
            pytest.fail(f"gpdiag serve (port {self.port}) did not exit within {STOP_TIMEOUT_S:.0f}s "
                        f"of SIGTERM.\n--- stderr ---\n{self.stderr()}", pytrace=False)
        finally:
            for f in (getattr(self, "stdout_f", None), getattr(self, "stderr_f", None)):
                if f:
                    f.close()
        self.proc = None
        assert self.exit_code in (0, -signal.SIGTERM), (
            f"gpdiag serve exited with unexpected code {self.exit_code} after SIGTERM.\n"
            f"--- stderr ---\n{self.stderr()}")

    # -- helpers ---------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run `gpdiag <args> --config <this server's config>`; fail loudly on non-zero exit."""
        cmd = [self.binary, *args, "--config", str(self.config_path)]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            env=server_env(), cwd=str(self.workdir))
        if cp.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {cp.returncode}\n--- stdout ---\n{cp.stdout}\n"
                        f"--- stderr ---\n{cp.stderr}", pytrace=False)
        return cp

    def create_key(self, account: str) -> Dict[str, str]:
        cp = self.cli("keys", "create", "--account", account)
        kid = re.search(r"^AccessKeyId:\s*(\S+)\s*$", cp.stdout, re.M)
        sec = re.search(r"^AccessKeySecret:\s*(\S+)\s*$", cp.stdout, re.M)
        assert kid and sec, f"`keys create` printed no AccessKeyId/AccessKeySecret lines:\n{cp.stdout}"
        return {"access_key_id": kid.group(1), "access_key_secret": sec.group(1)}

    def disable_key(self, access_key_id: str) -> None:
        self.cli("keys", "disable", access_key_id)

    def client(self, mode: str, account: Optional[str] = None, *, access_key_id: str = None,
               access_key_secret: str = None, port: Optional[int] = None) -> GpdbClient:
        if account is not None:
            access_key_id = access_key_id or ACCOUNTS[account]["access_key_id"]
            access_key_secret = access_key_secret or ACCOUNTS[account]["access_key_secret"]
        return make_client(mode, access_key_id, access_key_secret, port or self.port)


def make_client(mode: str, access_key_id: str, access_key_secret: str, port: int) -> GpdbClient:
    assert mode in MODES, mode
    kw: Dict[str, Any] = dict(
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        endpoint=f"127.0.0.1:{port}",
        protocol="http",
        region_id=REGION,
        connect_timeout=5000,
        read_timeout=10000,
    )
    if mode == "v2":
        kw["signature_algorithm"] = "v2"
    return GpdbClient(TeaConfig(**kw))


class ServerFactory:
    """Starts gpdiag servers, each in its own directory; stops them all at session end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self._tmp = tmp_path_factory
        self._servers: List[GpdiagServer] = []

    def start(self, name: str = "gpdiag", calls_per_second: int = 1000) -> GpdiagServer:
        binary = gpdiag_bin()
        workdir = self._tmp.mktemp(name)
        (workdir / "objects").mkdir()
        port = free_port()
        cfg = workdir / "gpdiag.toml"
        cfg.write_text(render_config(port, workdir, calls_per_second=calls_per_second))
        srv = GpdiagServer(binary=binary, workdir=workdir, port=port, config_path=cfg,
                           stderr_path=workdir / "server.stderr", stdout_path=workdir / "server.stdout")
        self._servers.append(srv)
        return srv.start()

    def stop(self, srv: GpdiagServer) -> None:
        if srv in self._servers:
            self._servers.remove(srv)
        srv.stop()

    def stop_all(self) -> None:
        errors = []
        while self._servers:
            srv = self._servers.pop()
            try:
                srv.stop()
            except BaseException as e:  # keep stopping the others, then report
                errors.append(f"port {srv.port}: {e}")
        if errors:
            pytest.fail("stopping gpdiag servers failed:\n" + "\n".join(errors), pytrace=False)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def server_factory(tmp_path_factory):
    fac = ServerFactory(tmp_path_factory)
    yield fac
    fac.stop_all()


@pytest.fixture(scope="session")
def server(server_factory) -> GpdiagServer:
    """The shared gpdiag server (calls_per_second = 1000)."""
    srv = server_factory.start("main")
    yield srv
    server_factory.stop(srv)


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def alice(server, mode) -> GpdbClient:
    return server.client(mode, "alice")


@pytest.fixture
def bob(server, mode) -> GpdbClient:
    return server.client(mode, "bob")


ERROR_BODY_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def check_error(exc: BaseException, code: str, status: int,
                cls: type = tea_exceptions.ClientException) -> BaseException:
    """Assert an SDK exception carries `code` and HTTP `status` the way the Tea SDK surfaces them."""
    assert isinstance(exc, cls), (
        f"expected {cls.__name__}({code}, {status}), got {type(exc).__module__}.{type(exc).__name__}: {exc}")
    assert exc.code == code, f"expected code {code!r}, got {exc.code!r}: {exc}"
    assert exc.status_code == status, f"expected HTTP {status} for {code}, got {exc.status_code}: {exc}"
    data = exc.data
    assert isinstance(data, dict), f"exception has no parsed JSON body: {exc!r}"
    assert data.get("statusCode") == status
    missing = ERROR_BODY_KEYS - set(data)
    assert not missing, f"error body lacks {sorted(missing)}: {data}"
    assert data["Code"] == code
    for k in ERROR_BODY_KEYS:
        assert isinstance(data[k], str) and data[k], f"error body field {k} empty/non-string: {data}"
    assert exc.request_id == data["RequestId"]
    return exc


def expect_error(fn: Callable[[], Any], code: str, status: int,
                 cls: type = tea_exceptions.ClientException) -> BaseException:
    try:
        resp = fn()
    except Exception as e:  # noqa: BLE001 - we classify below
        return check_error(e, code, status, cls)
    body = getattr(resp, "body", None)
    body = body.to_map() if hasattr(body, "to_map") else body
    pytest.fail(f"expected error {code} (HTTP {status}) but the call succeeded: {body}", pytrace=False)


@pytest.fixture
def expect_err():
    return expect_error


class World:
    """Read-only view of the configured accounts/instances plus helpers, for the test modules."""
    REGION = REGION
    ACCOUNTS = ACCOUNTS
    INSTANCES = INSTANCES
    INSTANCES_BY_ID = INSTANCES_BY_ID
    OK_CORE = OK_CORE
    instances_of = staticmethod(instances_of)
    make_client = staticmethod(make_client)
    check_error = staticmethod(check_error)
    expect_error = staticmethod(expect_error)


@pytest.fixture(scope="session")
def world() -> World:
    return World()


# ---------------------------------------------------------------------------------------------
# Servers with extra [objects] / [exports] settings, and the S3 test server (Garage)
# ---------------------------------------------------------------------------------------------

S3_ENV = ("GPDIAG_TEST_S3_ENDPOINT", "GPDIAG_TEST_S3_REGION", "GPDIAG_TEST_S3_BUCKET",
          "GPDIAG_TEST_S3_ACCESS_KEY_ID", "GPDIAG_TEST_S3_SECRET_ACCESS_KEY")
REPO_ROOT = Path(__file__).resolve().parents[2]
S3_SERVER_SCRIPT = REPO_ROOT / "scripts" / "s3-server"
# A first start on a fresh machine builds Garage (about 8 minutes on 2 cores).
S3_START_TIMEOUT_S = 3900


@dataclass
class S3Target:
    """Where an s3:// gpdiag server puts its files: an S3-compatible endpoint and bucket."""
    endpoint: str
    region: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def objects_settings(self, prefix: str) -> Dict[str, Any]:
        """The `[objects]` keys for a server writing under `s3://BUCKET/PREFIX`."""
        return {
            "url": f"s3://{self.bucket}/{prefix}",
            "s3_endpoint": self.endpoint,
            "s3_region": self.region,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
            "s3_path_style": True,
        }


def _parse_s3_exports(text: str) -> Dict[str, str]:
    found = dict(re.findall(r"^export (GPDIAG_TEST_S3_[A-Z_]+)=(\S+)\s*$", text, re.M))
    missing = [v for v in S3_ENV if not found.get(v)]
    if missing:
        pytest.fail(f"scripts/s3-server printed no {', '.join(missing)}:\n{text}", pytrace=False)
    return found


def _s3_target(values: Dict[str, str]) -> S3Target:
    return S3Target(*(values[v] for v in S3_ENV))


@pytest.fixture(scope="session")
def s3_target(tmp_path_factory) -> S3Target:
    """The S3 server of the test command (GPDIAG_TEST_S3_*), or, when those are unset (pytest run
    by hand), a private Garage started here with scripts/s3-server and stopped at session end."""
    given = {v: os.environ.get(v, "") for v in S3_ENV}
    if all(given.values()):
        yield _s3_target(given)
        return
    if any(given.values()):
        pytest.fail("GPDIAG_TEST_S3_* are only partly set: "
                    + ", ".join(f"{k}={'set' if v else 'unset'}" for k, v in given.items()), pytrace=False)
    workdir = tmp_path_factory.mktemp("s3")
    cmd = [str(S3_SERVER_SCRIPT), "start", str(workdir)]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=S3_START_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        subprocess.run([str(S3_SERVER_SCRIPT), "stop", str(workdir)], capture_output=True, timeout=60)
        pytest.fail(f"{' '.join(cmd)} did not finish within {S3_START_TIMEOUT_S}s:\n{e.stderr}", pytrace=False)
    try:
        if cp.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {cp.returncode}\n--- stdout ---\n{cp.stdout}\n"
                        f"--- stderr ---\n{cp.stderr[-8000:]}", pytrace=False)
        target = _s3_target(_parse_s3_exports(cp.stdout))
        yield target
    finally:
        stop = subprocess.run([str(S3_SERVER_SCRIPT), "stop", str(workdir)], capture_output=True, text=True,
                              timeout=60)
        if stop.returncode != 0:
            pytest.fail(f"scripts/s3-server stop {workdir} exited {stop.returncode}:\n{stop.stderr}", pytrace=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return _toml_str(str(v))


def render_config_with(port: int, workdir: Path, *, objects: Optional[Dict[str, Any]] = None,
                       exports: Optional[Dict[str, Any]] = None, calls_per_second: int = 1000) -> str:
    """`render_config` with `[objects]` replaced by `objects` (when given) and an `[exports]` table."""
    text = render_config(port, workdir, calls_per_second=calls_per_second)
    if objects is not None:
        default = f"[objects]\nurl = {_toml_str('file://' + str(workdir / 'objects'))}\n"
        assert default in text, "render_config changed its [objects] block"
        text = text.replace(default, "[objects]\n" + "".join(
            f"{k} = {_toml_value(v)}\n" for k, v in objects.items()), 1)
    if exports:
        # A table after the [[instances]] entries ends the last one, as TOML says.
        text += "\n[exports]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in exports.items())
    return text


def start_server_with(factory: ServerFactory, name: str, *, objects: Optional[Dict[str, Any]] = None,
                      exports: Optional[Dict[str, Any]] = None, calls_per_second: int = 1000) -> GpdiagServer:
    """Like `factory.start`, with extra `[objects]` / `[exports]` settings; stopped with the others."""
    binary = gpdiag_bin()
    workdir = factory._tmp.mktemp(name)
    (workdir / "objects").mkdir()
    port = free_port()
    cfg = workdir / "gpdiag.toml"
    cfg.write_text(render_config_with(port, workdir, objects=objects, exports=exports,
                                      calls_per_second=calls_per_second))
    srv = GpdiagServer(binary=binary, workdir=workdir, port=port, config_path=cfg,
                       stderr_path=workdir / "server.stderr", stdout_path=workdir / "server.stdout")
    factory._servers.append(srv)
    return srv.start()
