"""Gateway-level behaviour (authentication, timestamps, nonces, throttling, error envelope),
driven through the official SDK in both signing modes (fixture `mode`: acs3, v2).
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Dict, List, Optional
from urllib.parse import quote_plus

import pytest
import requests

from alibabacloud_gpdb20160503 import models as gpdb
from alibabacloud_tea_openapi import exceptions as tea_exceptions
from alibabacloud_tea_openapi.utils import Utils as TeaUtils

ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def list_req(**kw):
    kw.setdefault("region_id", "cn-hangzhou")
    return gpdb.DescribeDBInstancesRequest(**kw)


# ------------------------------------------------------------------------------------------------
# Raw HTTP helpers: a one-request-per-connection recording proxy and a raw-bytes sender
# ------------------------------------------------------------------------------------------------

def read_http_request(conn: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: Dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def send_raw(port: int, raw: bytes, timeout: float = 10) -> RawResponse:
    """Send exactly `raw` on a fresh TCP connection and parse the HTTP response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        r = http.client.HTTPResponse(s)
        r.begin()
        body = r.read()
        return RawResponse(r.status, r.reason, {k.lower(): v for k, v in r.getheaders()}, body)


@dataclass
class Exchange:
    request: bytes
    response: RawResponse


class RecordingProxy:
    """Forwards each client connection's single request verbatim to the upstream server and
    records the exact request bytes plus the parsed response (answered with Connection: close)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.exchanges: List[Exchange] = []
        self.errors: List[BaseException] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._handle(conn)
            except BaseException as e:  # surfaced by close()
                self.errors.append(e)
            finally:
                conn.close()

    def _handle(self, conn: socket.socket):
        conn.settimeout(10)
        raw = read_http_request(conn)
        if not raw:
            return
        resp = send_raw(self.upstream_port, raw)
        self.exchanges.append(Exchange(raw, resp))
        out = [f"HTTP/1.1 {resp.status} {resp.reason}".encode()]
        for k, v in resp.headers.items():
            if k in ("content-length", "transfer-encoding", "connection"):
                continue
            out.append(f"{k}: {v}".encode())
        out.append(f"content-length: {len(resp.body)}".encode())
        out.append(b"connection: close")
        conn.sendall(b"\r\n".join(out) + b"\r\n\r\n" + resp.body)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def proxy(server):
    p = RecordingProxy(server.port)
    yield p
    p.close()


def assert_error_envelope(resp: RawResponse, code: Optional[str] = None, status: Optional[int] = None):
    if status is not None:
        assert resp.status == status, (resp.status, resp.body)
    assert resp.headers.get("content-type", "").lower().startswith("application/json"), resp.headers
    body = resp.json()
    missing = ERROR_KEYS - set(body)
    assert not missing, f"error body lacks {sorted(missing)}: {body}"
    for k in ERROR_KEYS:
        assert isinstance(body[k], str) and body[k], body
    if code is not None:
        assert body["Code"] == code, body
    assert resp.headers.get("x-acs-request-id") == body["RequestId"], (
        f"x-acs-request-id header {resp.headers.get('x-acs-request-id')!r} != body RequestId {body['RequestId']!r}")
    return body


# ------------------------------------------------------------------------------------------------
# Success envelope
# ------------------------------------------------------------------------------------------------

def test_success_has_request_id_header(alice):
    resp = alice.describe_dbinstances(list_req())
    assert resp.status_code == 200
    rid = resp.body.request_id
    assert isinstance(rid, str) and rid
    assert resp.headers.get("x-acs-request-id") == rid
    assert resp.headers.get("content-type", "").lower().startswith("application/json")
    # request ids are unique per request
    assert alice.describe_dbinstances(list_req()).body.request_id != rid


# ------------------------------------------------------------------------------------------------
# Authentication failures
# ------------------------------------------------------------------------------------------------

def test_wrong_secret(server, mode, world):
    c = server.client(mode, access_key_id=world.ACCOUNTS["alice"]["access_key_id"],
                      access_key_secret="definitely-not-alices-secret")
    world.expect_error(lambda: c.describe_dbinstances(list_req()), "SignatureDoesNotMatch", 400)


def test_other_accounts_secret(server, mode, world):
    c = server.client(mode, access_key_id=world.ACCOUNTS["alice"]["access_key_id"],
                      access_key_secret=world.ACCOUNTS["bob"]["access_key_secret"])
    world.expect_error(lambda: c.describe_dbinstances(list_req()), "SignatureDoesNotMatch", 400)


def test_unknown_access_key(server, mode, world):
    c = server.client(mode, access_key_id="LTAInobody000000", access_key_secret="whatever")
    world.expect_error(lambda: c.describe_dbinstances(list_req()), "InvalidAccessKeyId.NotFound", 404)


KEY_PROPAGATION_S = 3.0


def first_success_with_new_key(client, world):
    """A key made by `gpdiag keys create` reaches the running server through its periodic key
    reload (the brief allows about 2 s for a disable to propagate; creation is treated alike).
    Poll until it is accepted; the only tolerated answer meanwhile is InvalidAccessKeyId.NotFound."""
    deadline = time.monotonic() + KEY_PROPAGATION_S
    while True:
        try:
            return client.describe_dbinstances(list_req(page_size=100))
        except tea_exceptions.ClientException as e:
            if e.code != "InvalidAccessKeyId.NotFound" or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_cli_key_acts_as_its_account(server, mode, world):
    key = server.create_key("bob")
    c = server.client(mode, **key)
    body = first_success_with_new_key(c, world).body.to_map()
    got = {i["DBInstanceId"] for i in body["Items"]["DBInstance"]}
    assert got == {i["id"] for i in world.instances_of("bob")}


def test_disabled_key(server, mode, world):
    key = server.create_key("alice")
    c = server.client(mode, **key)
    body = first_success_with_new_key(c, world).body.to_map()
    assert {i["DBInstanceId"] for i in body["Items"]["DBInstance"]} == \
        {i["id"] for i in world.instances_of("alice")}

    server.disable_key(key["access_key_id"])
    t0 = time.monotonic()
    deadline = t0 + 5.0
    err = None
    while time.monotonic() < deadline:
        try:
            c.describe_dbinstances(list_req())
        except Exception as e:  # noqa: BLE001
            err = e
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    assert err is not None, "disabled key still accepted 5 s after `keys disable`"
    world.check_error(err, "InvalidAccessKeyId.Inactive", 400)
    assert elapsed < 3.0, f"disabled key refused only after {elapsed:.2f}s (expected about 2 s)"
    # stays refused
    world.expect_error(lambda: c.describe_dbinstances(list_req()), "InvalidAccessKeyId.Inactive", 400)
    # the account's configured key is unaffected
    assert server.client(mode, "alice").describe_dbinstances(list_req()).status_code == 200


# ------------------------------------------------------------------------------------------------
# Timestamp window (monkeypatch the SDK's timestamp source, used by both signing paths:
# `Timestamp` for v2, `x-acs-date` for ACS3 - both come from alibabacloud_tea_openapi.utils.Utils.get_timestamp)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("skew_minutes,expired", [(-20, True), (20, True), (-5, False)],
                         ids=["past20m", "future20m", "past5m"])
def test_timestamp_window(server, proxy, mode, world, monkeypatch, skew_minutes, expired):
    ts = (datetime.now(timezone.utc) + timedelta(minutes=skew_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setattr(TeaUtils, "get_timestamp", staticmethod(lambda: ts))
    c = server.client(mode, "alice", port=proxy.port)
    if expired:
        world.expect_error(lambda: c.describe_dbinstances(list_req()), "InvalidTimeStamp.Expired", 400)
    else:
        assert c.describe_dbinstances(list_req()).status_code == 200
    # make sure the patched time really went out on the wire
    sent = proxy.exchanges[-1].request
    needle = f"x-acs-date: {ts}" if mode == "acs3" else f"Timestamp={quote_plus(ts)}"
    assert needle.encode() in sent, sent


# ------------------------------------------------------------------------------------------------
# Replay: identical bytes twice
# ------------------------------------------------------------------------------------------------

def test_replayed_request_rejected(server, proxy, mode, world):
    c = server.client(mode, "alice", port=proxy.port)
    resp = c.describe_dbinstances(list_req())
    assert resp.status_code == 200
    assert len(proxy.exchanges) == 1
    first = proxy.exchanges[0]
    assert first.response.status == 200
    replay = send_raw(server.port, first.request)
    assert_error_envelope(replay, "SignatureNonceUsed", 400)
    # and again
    assert_error_envelope(send_raw(server.port, first.request), "SignatureNonceUsed", 400)


# ------------------------------------------------------------------------------------------------
# Error envelope and x-acs-request-id on errors
# ------------------------------------------------------------------------------------------------

def test_error_envelope_via_sdk(server, proxy, mode, world):
    c = server.client(mode, "alice", port=proxy.port)
    e = world.expect_error(
        lambda: c.describe_dbinstance_attribute(gpdb.DescribeDBInstanceAttributeRequest(dbinstance_id="gp-nope")),
        "InvalidDBInstanceId.NotFound", 404)
    body = assert_error_envelope(proxy.exchanges[-1].response, "InvalidDBInstanceId.NotFound", 404)
    assert body["RequestId"] == e.request_id


def test_error_envelope_raw_unsigned(server, mode):
    # An SDK call first (so the mode matters for something), then an unsigned raw request.
    assert server.client(mode, "alice").describe_dbinstances(list_req()).status_code == 200
    s = requests.Session()
    s.trust_env = False
    r = s.post(server.base_url + "/", params={"Action": "DescribeDBInstances", "Version": "2016-05-03",
                                              "RegionId": "cn-hangzhou", "Format": "JSON"}, timeout=10)
    raw = RawResponse(r.status_code, r.reason, {k.lower(): v for k, v in r.headers.items()}, r.content)
    body = assert_error_envelope(raw, status=400)
    assert body["Code"] in ("MissingParameter", "IncompleteSignature"), body


# ------------------------------------------------------------------------------------------------
# Throttling (separate server with calls_per_second = 5)
# ------------------------------------------------------------------------------------------------

def test_throttling_per_user(server_factory, mode, world):
    srv = server_factory.start(f"throttle-{mode}", calls_per_second=5)
    try:
        alice = srv.client(mode, "alice")
        bob = srv.client(mode, "bob")
        ok, throttled, other = 0, [], []
        t_last_refusal = None
        t0 = time.monotonic()
        for _ in range(40):
            try:
                alice.describe_dbinstances(list_req())
                ok += 1
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) == "Throttling.User":
                    throttled.append(e)
                    t_last_refusal = time.monotonic()
                else:
                    other.append(e)
        elapsed = time.monotonic() - t0
        assert not other, f"unexpected errors during the burst: {other[0]!r}"
        assert ok >= 1, "no call succeeded during the burst"
        assert throttled, f"all {ok} calls succeeded in {elapsed:.2f}s with calls_per_second=5"
        assert ok <= 5 * (elapsed + 2), f"{ok} calls passed in {elapsed:.2f}s with calls_per_second=5"
        for e in throttled:
            world.check_error(e, "Throttling.User", 400, tea_exceptions.ThrottlingException)
            assert isinstance(e.retry_after, int) and e.retry_after > 0, e.retry_after

        # bob, on the same server, is unaffected by alice's burst: his first call passes while
        # alice (calling again right after him) is still refused.
        assert bob.describe_dbinstances(list_req()).status_code == 200
        # Only if the wait the server advertised to alice has certainly not run out yet:
        if time.monotonic() < t_last_refusal + throttled[-1].retry_after / 1000.0 - 0.03:
            e_again = world.expect_error(lambda: alice.describe_dbinstances(list_req()), "Throttling.User", 400,
                                         tea_exceptions.ThrottlingException)
            throttled.append(e_again)
        # ...and bob keeps being served at a pace within his own limit (one call per 1/rate seconds).
        for _ in range(2):
            time.sleep(0.25)
            assert bob.describe_dbinstances(list_req()).status_code == 200

        # alice recovers once the advertised wait is over
        wait_s = min(max(e.retry_after for e in throttled) / 1000.0, 2.0)
        time.sleep(wait_s)
        deadline = time.monotonic() + 3.0
        while True:
            try:
                alice.describe_dbinstances(list_req())
                break
            except tea_exceptions.ThrottlingException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        server_factory.stop(srv)
