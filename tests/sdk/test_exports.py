"""Exports end to end through the official SDK in both signing modes (fixture `mode`: acs3, v2),
against a gpdiag writing its files to `file://` and one writing them to `s3://` (a real
S3-compatible server, Garage: fixture `s3_target`): DownloadDiagnosisRecords,
DownloadSlowSQLRecords, DescribeDownloadRecords and gpdiag's own CancelDownloadTask.

Records enter through `gpdiag records import` (the corpus and the Python reference of the listing
semantics are shared with test_diagnosis.py, in diagnosis_ref.py). Each export's file is fetched
from its DownloadUrl with a plain HTTP client, parsed as RFC 4180 CSV, and must hold exactly the
records DescribeDiagnosisRecords lists for the same filters (all pages), in the same order, with
the full SQL, durations and start times that were imported.

Exports are started in batches and polled together: one at a time would spend most of the run
waiting for the worker's poll interval.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from alibabacloud_gpdb20160503 import models as gpdb
from alibabacloud_tea_openapi import utils_models as open_api_models
from alibabacloud_tea_openapi.utils import Utils
from darabonba.runtime import RuntimeOptions

from conftest import REGION, S3Target, expect_error, start_server_with
from diagnosis_ref import (
    BAD_CONDITIONS, BAD_TIMES, BASE, BOB, CANNED_CONDITIONS, FULL, HOUR, MAIN, MINUTE,
    THRESHOLD, Diag, Rec, all_items, api_min, api_sec, build_bob_corpus, build_main_corpus,
    expected_records, now_ms, parse_api_time, ref_sort, ref_window, rfc3339_ms, ref_select,
)

UTC = timezone.utc
SQL_DIAGNOSE = "SQL_DIAGNOSE"
SLOW_SQL = "SLOW_SQL"
SLOW_THRESHOLD_MS = 1000          # [exports] slow_query_ms, left at its default
BOM = "\ufeff".encode()
WAIT_S = 30.0

# The header row in each file language (the README's column list; labels of crates/core lang.rs).
HEADERS = {
    "en": ["Query ID", "Session ID", "Database", "User", "Status", "Start Time (UTC)", "Duration (ms)", "SQL"],
    "zh": ["查询ID", "会话ID", "数据库", "用户", "状态", "开始时间(UTC)", "执行耗时(毫秒)", "SQL语句"],
    "ja": ["クエリID", "セッションID", "データベース", "ユーザー", "ステータス", "開始時刻(UTC)", "実行時間(ミリ秒)", "SQL文"],
    "zh-tw": ["查詢ID", "會話ID", "資料庫", "使用者", "狀態", "開始時間(UTC)", "執行耗時(毫秒)", "SQL語句"],
}
LANGS = [None, "en", "zh", "ja", "zh-tw"]   # None: Lang omitted, which is en
CONDITIONS = [None] + CANNED_CONDITIONS

RECORD_KEYS = {"DownloadId", "DownloadUrl", "ExceptionMsg", "FileName", "Status"}


# ------------------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------------------

@dataclass
class ExportServer:
    backend: str                      # "file" or "s3"
    diag: Diag                        # the server and the mirror of its records
    s3: Optional[S3Target] = None
    prefix: Optional[str] = None      # s3:// only: this server's key prefix in the bucket
    batches: Dict[Tuple[str, str], Any] = field(default_factory=dict)

    @property
    def server(self):
        return self.diag.server


@pytest.fixture(scope="module", params=["file", "s3"])
def ex(request, server_factory, tmp_path_factory) -> ExportServer:
    backend = request.param
    s3 = prefix = objects = None
    if backend == "s3":
        s3 = request.getfixturevalue("s3_target")
        prefix = f"sdk-exports-{uuid.uuid4().hex[:12]}"
        objects = s3.objects_settings(prefix)
    # Room for a whole batch of exports running at once, and for calls faster than 1000 a second
    # (the refused-input tests fire them back to back on loopback).
    srv = start_server_with(server_factory, f"exports-{backend}", objects=objects,
                            exports={"max_running_per_account": 200}, calls_per_second=100_000)
    d = Diag(srv, tmp_path_factory.mktemp(f"exports-import-{backend}"))
    d.import_records(MAIN, build_main_corpus(now_ms()))
    d.import_records(BOB, build_bob_corpus())
    yield ExportServer(backend, d, s3, prefix)
    server_factory.stop(srv)


@pytest.fixture
def alice(ex, mode):
    return ex.server.client(mode, "alice")


@pytest.fixture
def bob(ex, mode):
    return ex.server.client(mode, "bob")


# ------------------------------------------------------------------------------------------------
# Calls
# ------------------------------------------------------------------------------------------------

def raw_call(client, action: str, query: Dict[str, Any]) -> Dict[str, Any]:
    """An action (or parameters) the SDK has no method for, through its generic `call_api`:
    the same signing (ACS3 or v1 by the client's config) as the generated methods."""
    params = open_api_models.Params(action=action, version="2016-05-03", protocol="HTTP", pathname="/",
                                    method="POST", auth_type="AK", style="RPC", req_body_type="formData",
                                    body_type="json")
    query = {k: v for k, v in query.items() if v is not None}
    resp = client.call_api(params, open_api_models.OpenApiRequest(query=Utils.query(query)), RuntimeOptions())
    assert resp["statusCode"] == 200, resp
    body = resp["body"]
    assert isinstance(body, dict) and "Code" not in body, body
    assert isinstance(body.get("RequestId"), str) and body["RequestId"]
    return body


def check_started(body: Dict[str, Any], instance: str) -> str:
    assert body.get("DBInstanceId") == instance, body
    did = body.get("DownloadId")
    assert isinstance(did, str) and did.isdigit(), f"DownloadId must be a string of digits: {body}"
    return did


def start_diagnosis(client, *, instance: str = MAIN, database: Optional[str] = "sales", start_time=None,
                    end_time=None, user=None, query_condition=None, lang=None, bom=None, gzip=None) -> str:
    """DownloadDiagnosisRecords; the typed SDK method unless an extra (Bom, Gzip) is asked for."""
    if bom is None and gzip is None:
        resp = client.download_diagnosis_records(gpdb.DownloadDiagnosisRecordsRequest(
            dbinstance_id=instance, database=database, start_time=start_time, end_time=end_time, user=user,
            query_condition=query_condition, lang=lang))
        assert resp.status_code == 200
        body = resp.body.to_map()
        assert "Code" not in body and body.get("RequestId"), body
        return check_started(body, instance)
    return check_started(raw_call(client, "DownloadDiagnosisRecords", {
        "DBInstanceId": instance, "Database": database, "StartTime": start_time, "EndTime": end_time,
        "User": user, "QueryCondition": query_condition, "Lang": lang,
        "Bom": None if bom is None else str(bom), "Gzip": None if gzip is None else str(gzip)}), instance)


def list_downloads(client, instance: str = MAIN, task_type: Optional[str] = SQL_DIAGNOSE) -> Dict[int, Dict]:
    """DescribeDownloadRecords as {DownloadId: record}; task_type None leaves the parameter out."""
    resp = client.describe_download_records(gpdb.DescribeDownloadRecordsRequest(
        dbinstance_id=instance, download_task_type=task_type))
    assert resp.status_code == 200
    body = resp.body.to_map()
    assert "Code" not in body and isinstance(body.get("RequestId"), str), body
    assert isinstance(body.get("Records"), list), body
    out: Dict[int, Dict] = {}
    for r in body["Records"]:
        assert set(r) == RECORD_KEYS, r
        assert type(r["DownloadId"]) is int, f"DownloadId is an integer in DescribeDownloadRecords: {r}"
        for k in RECORD_KEYS - {"DownloadId"}:
            assert isinstance(r[k], str), r
        assert r["Status"] in ("running", "finished", "failed"), r
        assert (r["DownloadUrl"] != "") == (r["Status"] == "finished"), (
            f"DownloadUrl must be non-empty exactly when the export finished: {r}")
        if r["Status"] != "failed":
            assert r["ExceptionMsg"] == "", r
        assert r["DownloadId"] not in out, f"download {r['DownloadId']} listed twice"
        out[r["DownloadId"]] = r
    return out


def wait_for(client, ids: List[str], instance: str = MAIN, task_type: str = SQL_DIAGNOSE) -> Dict[str, Dict]:
    """Polls DescribeDownloadRecords until every download in `ids` has ended."""
    deadline = time.monotonic() + WAIT_S
    while True:
        listed = list_downloads(client, instance, task_type)
        missing = [i for i in ids if int(i) not in listed]
        assert not missing, f"downloads {missing} are not listed under {task_type}"
        records = {i: listed[int(i)] for i in ids}
        running = [i for i, r in records.items() if r["Status"] == "running"]
        if not running:
            return records
        if time.monotonic() > deadline:
            pytest.fail(f"downloads {running} still running after {WAIT_S:.0f}s", pytrace=False)
        time.sleep(0.1)


def http() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def fetch(url: str, **kw) -> requests.Response:
    return http().get(url, timeout=10, **kw)


def file_name(start_time: str, end_time: str, gz: bool = False) -> str:
    def stamp(s: str) -> str:
        return datetime.fromtimestamp(parse_api_time(s) / 1000, UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp(start_time)}-{stamp(end_time)}.csv" + (".gz" if gz else "")


# ------------------------------------------------------------------------------------------------
# The file format
# ------------------------------------------------------------------------------------------------

def parse_rfc4180(text: str) -> List[List[str]]:
    """A strict RFC 4180 reader: CRLF between records, fields with a quote, comma or line break
    quoted, quotes doubled inside; anything else is an error (Python's csv module forgives it)."""
    rows: List[List[str]] = []
    i, n = 0, len(text)
    assert n, "the file is empty: not even a header"
    while i < n:
        row: List[str] = []
        while True:
            if text.startswith('"', i):
                i += 1
                parts = []
                while True:
                    j = text.find('"', i)
                    assert j >= 0, f"record {len(rows)}: unterminated quoted field"
                    parts.append(text[i:j])
                    i = j + 1
                    if text.startswith('"', i):
                        parts.append('"')
                        i += 1
                        continue
                    break
                assert i == n or text[i] in ",\r", (
                    f"record {len(rows)}: {text[i:i + 20]!r} follows a closing quote")
                row.append("".join(parts))
            else:
                j = i
                while j < n and text[j] not in ',\r\n"':
                    j += 1
                assert j == n or text[j] in ",\r", (
                    f"record {len(rows)}: unquoted field contains {text[j]!r}: {text[i:j + 20]!r}")
                row.append(text[i:j])
                i = j
            if text.startswith(",", i):
                i += 1
                continue
            break
        if i < n:
            assert text.startswith("\r\n", i), f"record {len(rows)} does not end with CRLF: {text[i:i + 20]!r}"
            i += 2
        rows.append(row)
    return rows


def read_csv(data: bytes) -> List[List[str]]:
    text = data.decode("utf-8")  # strict: the file is UTF-8
    rows = parse_rfc4180(text)
    assert rows == list(csv.reader(io.StringIO(text, newline=""))), "csv module reads the file differently"
    assert all(len(r) == 8 for r in rows), [r for r in rows if len(r) != 8][:3]
    return rows


def csv_row(r: Rec) -> List[str]:
    return [r.query_id, r.session_id, r.database, r.user, r.status, rfc3339_ms(r.start_ms),
            str(r.duration_ms), r.sql]


def ms_of_iso(s: str) -> int:
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1000 + dt.microsecond // 1000


def fetch_export(ex: ExportServer, record: Dict[str, Any]) -> bytes:
    """The bytes behind a finished download's link, exactly as stored."""
    url = record["DownloadUrl"]
    r = fetch(url)
    assert r.status_code == 200, f"GET {url}: HTTP {r.status_code} {r.text[:300]!r}"
    gz = record["FileName"].endswith(".gz")
    ctype = r.headers.get("Content-Type", "")
    want_type = "application/gzip" if gz else "text/csv"
    assert ctype.split(";")[0].strip() == want_type, f"Content-Type {ctype!r} for {record['FileName']}"
    if not gz:
        assert "charset=utf-8" in ctype.replace(" ", "").lower(), ctype
    if ex.backend == "file":
        assert r.headers.get("Content-Disposition") == f'attachment; filename="{record["FileName"]}"', r.headers
    assert "Content-Encoding" not in r.headers, r.headers
    return r.content


# ------------------------------------------------------------------------------------------------
# DownloadDiagnosisRecords: every language and every QueryCondition against the listing
# ------------------------------------------------------------------------------------------------

def _spec(database="sales", lang=None, cond=None, user=None, window=None, bom=None, gzip=None) -> Dict[str, Any]:
    window = window or FULL
    return dict(database=database, lang=lang, query_condition=cond, user=user, bom=bom, gzip=gzip, **window)


def _spec_id(s: Dict[str, Any]) -> str:
    parts = [s["database"], s["lang"] or "nolang"]
    if s["query_condition"]:
        c = json.loads(s["query_condition"])
        parts.append("-".join(f"{k}{v}" for k, v in c.items()))
    if s["user"]:
        parts.append("user=" + s["user"])
    if (s["start_time"], s["end_time"]) != (FULL["start_time"], FULL["end_time"]):
        parts.append(f"{s['start_time']}..{s['end_time']}")
    for flag in ("bom", "gzip"):
        if s[flag] is not None:
            parts.append(f"{flag}={s[flag]}")
    return ",".join(parts)


SPECS: List[Dict[str, Any]] = [_spec(lang=lang, cond=cond) for lang in LANGS for cond in CONDITIONS]
SPECS += [
    _spec(database="报表", lang="zh"),
    _spec(database="analytics", user="etl", lang="ja"),
    _spec(user="Zoë", lang="zh-tw"),
    _spec(user="ETL", cond='{"Type":"cost","Min":"1000","Max":"2000"}'),
    # Window edges, minute and second forms (the file name follows the window given).
    _spec(database="ops", window=dict(start_time=api_min(BASE + HOUR), end_time=api_min(BASE + 2 * HOUR))),
    _spec(window=dict(start_time=api_sec(BASE + HOUR + 30 * MINUTE + 15_000), end_time=api_sec(BASE + 2 * HOUR)),
          cond='{"Type":"maxCost","Value":"7"}', lang="ja"),
    # Nothing matches: a header and no rows.
    _spec(database="no_such_db", lang="zh"),
    # gpdiag's extra parameters (not in the SDK model: sent through call_api).
    _spec(bom=True, gzip=True),
    _spec(bom=True),
    _spec(gzip=True, lang="zh-tw", cond='{"Type":"status","Value":"running"}'),
    _spec(bom=False, gzip=False),
]
PLAIN = SPECS.index(_spec())
GZIP_BOM = SPECS.index(_spec(bom=True, gzip=True))
BOM_ONLY = SPECS.index(_spec(bom=True))
FLAGS_OFF = SPECS.index(_spec(bom=False, gzip=False))
assert len({_spec_id(s) for s in SPECS}) == len(SPECS)


@dataclass
class Batch:
    ids: List[str]
    records: Dict[str, Dict[str, Any]]


def diagnosis_batch(ex: ExportServer, mode: str) -> Batch:
    """Starts every export in SPECS at once (per server and signing mode) and waits for them all."""
    key = ("diag", mode)
    if key not in ex.batches:
        client = ex.server.client(mode, "alice")
        try:
            before = set(list_downloads(client))
            ids = [start_diagnosis(client, **s) for s in SPECS]
            assert len(set(ids)) == len(ids), f"DownloadIds are not distinct: {ids}"
            assert not {int(i) for i in ids} & before, "a new export reuses an old DownloadId"
            ex.batches[key] = Batch(ids, wait_for(client, ids))
        except BaseException as e:  # every test of the batch reports the same failure, once started
            ex.batches[key] = e
    got = ex.batches[key]
    if isinstance(got, BaseException):
        raise got
    return got


def check_diagnosis_file(ex: ExportServer, client, spec: Dict[str, Any], record: Dict[str, Any],
                         listings: Optional[Dict] = None) -> bytes:
    """The file holds exactly what DescribeDiagnosisRecords lists for the same filters, in the same
    order, and what was imported; returns the CSV bytes without compression and BOM."""
    data = fetch_export(ex, record)
    if spec["gzip"]:
        assert data[:2] == b"\x1f\x8b", "a .gz file must be gzip"
        data = gzip.decompress(data)
    if spec["bom"]:
        assert data.startswith(BOM), f"Bom=true: the file must start with a UTF-8 BOM: {data[:10]!r}"
        data = data[len(BOM):]
    assert not data.startswith(BOM), "a BOM although Bom was not asked for"
    rows = read_csv(data)
    assert rows[0] == HEADERS[spec["lang"] or "en"], rows[0]
    body = rows[1:]

    filters = dict(database=spec["database"], start_time=spec["start_time"], end_time=spec["end_time"],
                   user=spec["user"], query_condition=spec["query_condition"])
    key = json.dumps(filters, sort_keys=True)
    if listings is not None and key in listings:
        listed = listings[key]
    else:
        listed = all_items(client, instance=MAIN, **filters)
        if listings is not None:
            listings[key] = listed
    want = expected_records(ex.diag, MAIN, **filters)
    assert [i["QueryID"] for i in listed] == [r.query_id for r in want], "the listing differs from the reference"

    assert [r[0] for r in body] == [i["QueryID"] for i in listed], (
        f"the file's query IDs differ from the listing's ({len(body)} rows, {len(listed)} listed)")
    for row, item, rec in zip(body, listed, want):
        assert row == csv_row(rec), f"row of {rec.query_id}: {row[:7]} ..."
        assert [row[1], row[2], row[3], row[4]] == [item["SessionID"], item["Database"], item["User"],
                                                    item["Status"]]
        assert ms_of_iso(row[5]) == item["StartTime"]
        assert int(row[6]) // 1000 == item["Duration"]
        assert row[7].startswith(item["SQLStmt"])
        assert (row[7] != item["SQLStmt"]) == item["SQLTruncated"], "the file has the whole SQL"
    return data


@pytest.mark.parametrize("index", range(len(SPECS)), ids=[_spec_id(s) for s in SPECS])
def test_diagnosis_export_holds_exactly_the_listing(ex, alice, mode, index):
    spec = SPECS[index]
    batch = diagnosis_batch(ex, mode)
    record = batch.records[batch.ids[index]]
    assert record["Status"] == "finished", record
    assert record["ExceptionMsg"] == ""
    assert record["DownloadId"] == int(batch.ids[index])
    assert record["FileName"] == file_name(spec["start_time"], spec["end_time"], gz=bool(spec["gzip"])), record
    assert record["DownloadUrl"]
    check_diagnosis_file(ex, alice, spec, record)


def test_diagnosis_export_corpus_is_demanding(ex, mode):
    """The batch covers what the brief asks for: multi-line, quoted, comma-laden, non-ASCII and
    over-threshold SQL, running records, ties, and several databases and users."""
    batch = diagnosis_batch(ex, mode)
    plain = expected_records(ex.diag, MAIN, **{k: SPECS[PLAIN][k] for k in ("database", "start_time", "end_time")})
    sqls = [r.sql for r in plain]
    assert any("\r\n" in s for s in sqls) and any("\n" in s.replace("\r\n", "") for s in sqls)
    assert any('"' in s for s in sqls) and any("," in s for s in sqls) and any("'" in s for s in sqls)
    assert any(len(s) > THRESHOLD for s in sqls) and any(not s.isascii() for s in sqls)
    assert {r.status for r in plain} == {"running", "finished"}
    assert len({r.start_ms for r in plain}) < len(plain), "no equal start times"
    assert len({r.duration_ms for r in plain}) < len(plain), "no equal durations"
    rows = sum(len(expected_records(ex.diag, MAIN, **{k: s[k] for k in (
        "database", "start_time", "end_time", "user", "query_condition")})) for s in SPECS)
    assert rows > 1000
    assert len(batch.ids) == len(SPECS)


def test_downloads_listing_default_type_is_sql_diagnose(ex, alice, mode):
    batch = diagnosis_batch(ex, mode)
    default = list_downloads(alice, task_type=None)
    explicit = list_downloads(alice, task_type=SQL_DIAGNOSE)
    for i in batch.ids:
        d, e = default[int(i)], explicit[int(i)]
        assert {k: v for k, v in d.items() if k != "DownloadUrl"} == {k: v for k, v in e.items() if k != "DownloadUrl"}
    slow = list_downloads(alice, task_type=SLOW_SQL)
    assert not {int(i) for i in batch.ids} & set(slow), "diagnosis exports listed under SLOW_SQL"


def test_gzip_and_bom_wrap_the_same_csv(ex, alice, mode):
    batch = diagnosis_batch(ex, mode)
    rec = lambda i: batch.records[batch.ids[i]]  # noqa: E731
    plain = fetch_export(ex, rec(PLAIN))
    assert not plain.startswith(BOM) and plain.startswith(b"Query ID,")
    packed = fetch_export(ex, rec(GZIP_BOM))
    assert gzip.decompress(packed) == BOM + plain
    assert fetch_export(ex, rec(BOM_ONLY)) == BOM + plain
    assert fetch_export(ex, rec(FLAGS_OFF)) == plain
    assert rec(GZIP_BOM)["FileName"].endswith(".csv.gz") and rec(BOM_ONLY)["FileName"].endswith(".csv")


def test_links_are_signed_and_tampering_is_refused(ex, alice, mode):
    batch = diagnosis_batch(ex, mode)
    record = list_downloads(alice)[int(batch.ids[PLAIN])]  # a freshly signed link
    url = record["DownloadUrl"]
    whole = fetch(url)
    assert whole.status_code == 200
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [k for k, _ in query]

    def with_query(q, path=None) -> str:
        return urlunsplit((parts.scheme, parts.netloc, path or parts.path, urlencode(q), ""))

    def flip(v: str) -> str:
        return ("1" if v[0] == "0" else "0") + v[1:]

    if ex.backend == "s3":
        assert f"{parts.scheme}://{parts.netloc}" == ex.s3.endpoint, url
        assert parts.path.startswith(f"/{ex.s3.bucket}/{ex.prefix}/"), f"not under this server's prefix: {url}"
        assert parts.path.endswith("/" + record["FileName"]), url
        for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                     "X-Amz-Signature"):
            assert name in names, f"a presigned URL has {name}: {url}"
        assert dict(query)["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert dict(query)["X-Amz-Credential"].startswith(ex.s3.access_key_id + "/")
        sig, expires = "X-Amz-Signature", "X-Amz-Expires"
    else:
        assert url.startswith(ex.server.base_url + "/downloads/"), url
        assert parts.path.endswith("/" + record["FileName"]), url
        assert {"Expires", "Signature"} <= set(names), url
        sig, expires = "Signature", "Expires"
    tampered = {
        "signature": with_query([(k, flip(v) if k == sig else v) for k, v in query]),
        "expiry": with_query([(k, str(int(v) + 3600) if k == expires else v) for k, v in query]),
        "no signature": with_query([(k, v) for k, v in query if k != sig]),
        "no query": with_query([]),
        "another file": with_query(query, path=parts.path[:-len(".csv")] + "x.csv"),
    }
    for what, bad in tampered.items():
        r = fetch(bad)
        # An incomplete presigned URL is a malformed request to S3 (Garage: 400 InvalidRequest);
        # a wrong signature is 403 everywhere.
        allowed = (400, 403) if ex.backend == "s3" and what in ("no signature", "no query") else (403,)
        assert r.status_code in allowed, f"{what}: GET {bad} answered {r.status_code}, not {allowed}: {r.text[:200]!r}"
        assert whole.content[:40] not in r.content
    # Range requests on the genuine link.
    part = fetch(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole.content[10:20], part.status_code
    assert part.headers.get("Content-Range") == f"bytes 10-19/{len(whole.content)}"


# ------------------------------------------------------------------------------------------------
# DownloadSlowSQLRecords
# ------------------------------------------------------------------------------------------------

SLOW_SPECS: List[Dict[str, Any]] = [
    dict(),                                                   # every database, threshold only
    dict(min_duration="5", max_duration="60"),                # 5 s <= d < 60 s
    dict(min_duration="0"),                                   # below the threshold: the threshold wins
    dict(dbname="analytics", max_duration="2"),               # one database, 1 s <= d < 2 s
    dict(user_name="etl", min_duration="2"),
    dict(dbname="sales", start_time=api_min(BASE + HOUR), end_time=api_min(BASE + 2 * HOUR)),
]
SLOW_TYPED = 2   # the first ones through the typed SDK method, the rest through call_api


def slow_expected(ex: ExportServer, s: Dict[str, Any]) -> List[Rec]:
    lo = max(SLOW_THRESHOLD_MS, 1000 * int(s.get("min_duration") or 0))
    cond = {"Type": "cost", "Min": str(lo)}
    if s.get("max_duration") is not None:
        cond["Max"] = str(1000 * int(s["max_duration"]))
    start, end = ref_window(s.get("start_time", FULL["start_time"]), s.get("end_time", FULL["end_time"]))
    sel = ref_select(ex.diag.recs(MAIN), s.get("dbname"), start, end, s.get("user_name"), None, json.dumps(cond))
    return ref_sort(sel, '[{"Field":"Duration","Type":"Desc"}]')


def slow_batch(ex: ExportServer, mode: str) -> Batch:
    key = ("slow", mode)
    if key not in ex.batches:
        client = ex.server.client(mode, "alice")
        try:
            ids = []
            for n, s in enumerate(SLOW_SPECS):
                kw = {**FULL, **s}
                if n < SLOW_TYPED:
                    # The SDK's response model has no DownloadId: the new one is the one listed since.
                    before = set(list_downloads(client, task_type=SLOW_SQL))
                    resp = client.download_slow_sqlrecords(gpdb.DownloadSlowSQLRecordsRequest(
                        dbinstance_id=MAIN, region_id=REGION, **kw))
                    assert resp.status_code == 200
                    body = resp.body.to_map()
                    assert body.get("DBInstanceId") == MAIN and body.get("RequestId"), body
                    new = set(list_downloads(client, task_type=SLOW_SQL)) - before
                    assert len(new) == 1, f"one call, one new SLOW_SQL download: {new}"
                    ids.append(str(new.pop()))
                else:
                    names = dict(dbname="DBName", start_time="StartTime", end_time="EndTime", user_name="UserName",
                                 min_duration="MinDuration", max_duration="MaxDuration")
                    body = raw_call(client, "DownloadSlowSQLRecords",
                                    {"DBInstanceId": MAIN, "RegionId": REGION,
                                     **{names[k]: v for k, v in kw.items()}})
                    ids.append(check_started(body, MAIN))
            ex.batches[key] = Batch(ids, wait_for(client, ids, task_type=SLOW_SQL))
        except BaseException as e:
            ex.batches[key] = e
    got = ex.batches[key]
    if isinstance(got, BaseException):
        raise got
    return got


def _slow_id(s: Dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in s.items()) or "defaults"


@pytest.mark.parametrize("index", range(len(SLOW_SPECS)), ids=[_slow_id(s) for s in SLOW_SPECS])
def test_slow_sql_export(ex, alice, mode, index):
    spec = SLOW_SPECS[index]
    batch = slow_batch(ex, mode)
    record = batch.records[batch.ids[index]]
    assert record["Status"] == "finished" and record["ExceptionMsg"] == "", record
    assert record["FileName"] == file_name(spec.get("start_time", FULL["start_time"]),
                                           spec.get("end_time", FULL["end_time"])), record
    rows = read_csv(fetch_export(ex, record))
    assert rows[0] == HEADERS["en"]
    want = slow_expected(ex, spec)
    assert [r[0] for r in rows[1:]] == [r.query_id for r in want], (
        f"{len(rows) - 1} rows, want {len(want)} (slowest first, over "
        f"{spec.get('dbname') or 'every database'})")
    assert rows[1:] == [csv_row(r) for r in want]
    assert all(int(r[6]) >= SLOW_THRESHOLD_MS for r in rows[1:])
    if index == 0:
        assert len({r.database for r in want}) >= 3, "the default export spans the databases"
        assert len({r.duration_ms for r in want}) < len(want), "no equal durations to order"
    if spec.get("dbname"):
        # The same selection through the listing, slowest first.
        cond = {"Type": "cost", "Min": str(max(SLOW_THRESHOLD_MS, 1000 * int(spec.get("min_duration") or 0)))}
        if spec.get("max_duration") is not None:
            cond["Max"] = str(1000 * int(spec["max_duration"]))
        listed = all_items(alice, instance=MAIN, database=spec["dbname"], user=spec.get("user_name"),
                           start_time=spec.get("start_time", FULL["start_time"]),
                           end_time=spec.get("end_time", FULL["end_time"]),
                           query_condition=json.dumps(cond), order='[{"Field":"Duration","Type":"Desc"}]')
        assert [i["QueryID"] for i in listed] == [r[0] for r in rows[1:]]


def test_slow_sql_duration_range_below_the_threshold_is_an_empty_export(ex, alice, mode):
    """MaxDuration under the slow threshold selects nothing: a valid export with a header only
    (not an error, and certainly not an InternalError)."""
    for max_duration in ("0", "1"):
        did = check_started(raw_call(alice, "DownloadSlowSQLRecords", {
            "DBInstanceId": MAIN, "StartTime": FULL["start_time"], "EndTime": FULL["end_time"],
            "MaxDuration": max_duration}), MAIN)
        record = wait_for(alice, [did], task_type=SLOW_SQL)[did]
        assert record["Status"] == "finished" and record["ExceptionMsg"] == "", record
        assert read_csv(fetch_export(ex, record)) == [HEADERS["en"]]


def test_slow_sql_exports_are_listed_only_under_slow_sql(ex, alice, mode):
    batch = slow_batch(ex, mode)
    ids = {int(i) for i in batch.ids}
    assert not ids & set(list_downloads(alice, task_type=SQL_DIAGNOSE))
    assert not ids & set(list_downloads(alice, task_type=None))
    assert ids <= set(list_downloads(alice, task_type=SLOW_SQL))
    assert [r.duration_ms for r in slow_expected(ex, SLOW_SPECS[3])] and {
        r.duration_ms for r in slow_expected(ex, SLOW_SPECS[3])} <= set(range(1000, 2000))


# ------------------------------------------------------------------------------------------------
# Isolation, availability gate and bad inputs
# ------------------------------------------------------------------------------------------------

def _gate_calls(client, instance: str) -> Dict[str, Any]:
    return {
        "download": lambda: client.download_diagnosis_records(gpdb.DownloadDiagnosisRecordsRequest(
            dbinstance_id=instance, database="sales", **FULL)),
        "slow": lambda: client.download_slow_sqlrecords(gpdb.DownloadSlowSQLRecordsRequest(
            dbinstance_id=instance, region_id=REGION, **FULL)),
        "describe": lambda: client.describe_download_records(gpdb.DescribeDownloadRecordsRequest(
            dbinstance_id=instance)),
        "cancel": lambda: raw_call(client, "CancelDownloadTask", {"DBInstanceId": instance, "DownloadId": "1"}),
    }


@pytest.mark.parametrize("action", ["download", "slow", "describe", "cancel"])
@pytest.mark.parametrize("instance,code,status", [
    (BOB, "InvalidDBInstanceId.NotFound", 404),
    ("gp-nobody-0001", "InvalidDBInstanceId.NotFound", 404),
    ("gp-alice-old", "IncorrectModuleVersion", 400),
    ("gp-alice-old2", "IncorrectModuleVersion", 400),
    ("gp-alice-classic", "IncorrectDBInstanceState", 400),
    ("gp-alice-serverless", "IncorrectDBInstanceState", 400),
])
def test_gate(ex, alice, action, instance, code, status):
    expect_error(_gate_calls(alice, instance)[action], code, status)


def test_accounts_see_only_their_own_downloads(ex, alice, bob, mode):
    batch = diagnosis_batch(ex, mode)
    for action in ("download", "slow", "describe", "cancel"):
        expect_error(_gate_calls(bob, MAIN)[action], "InvalidDBInstanceId.NotFound", 404)
    mine = start_diagnosis(bob, instance=BOB, database="sales", **FULL)
    bobs = wait_for(bob, [mine], instance=BOB)
    assert not {int(i) for i in batch.ids} & set(list_downloads(bob, instance=BOB))
    assert int(mine) not in list_downloads(alice)
    # Bob's file holds his records only (his corpus shares a database and a query ID with alice's).
    rows = read_csv(fetch_export(ex, bobs[mine]))
    s, e = ref_window(FULL["start_time"], FULL["end_time"])
    want = ref_sort(ref_select(ex.diag.recs(BOB), "sales", s, e))
    assert rows[1:] == [csv_row(r) for r in want] and want
    # Nor can bob cancel alice's download through his own instance.
    expect_error(lambda: raw_call(bob, "CancelDownloadTask", {"DBInstanceId": BOB, "DownloadId": batch.ids[0]}),
                 "InvalidDownloadId.NotFound", 404)


BAD_LANGS = ["fr", "english", "zh_tw", "zh-cn", "en-US", "中文"]


def _refused(ex, client, calls: List[Tuple[str, Any, str, int, Optional[str]]]) -> None:
    """Each call is refused with its code, its message naming the parameter, and creates nothing."""
    before = (set(list_downloads(client)), set(list_downloads(client, task_type=SLOW_SQL)))
    for what, fn, code, status, name in calls:
        e = expect_error(fn, code, status)
        if name:
            assert name in e.data["Message"], f"{what}: message does not name {name}: {e.data}"
    after = (set(list_downloads(client)), set(list_downloads(client, task_type=SLOW_SQL)))
    assert after == before, "a refused call created a download"


def test_download_diagnosis_bad_inputs(ex, alice):
    def dl(**kw):
        base = dict(dbinstance_id=MAIN, database="sales", **FULL)
        base.update(kw)
        return lambda: alice.download_diagnosis_records(gpdb.DownloadDiagnosisRecordsRequest(**base))

    def raw(**kw):
        q = {"DBInstanceId": MAIN, "Database": "sales", "StartTime": FULL["start_time"], "EndTime": FULL["end_time"]}
        q.update(kw)
        return lambda: raw_call(alice, "DownloadDiagnosisRecords", q)

    calls = [(f"Lang={v}", dl(lang=v), "InvalidParameter", 400, "Lang") for v in BAD_LANGS]
    calls += [(f"QueryCondition={c}", dl(query_condition=c), "InvalidParameter", 400, "QueryCondition")
              for c in BAD_CONDITIONS]
    calls += [("no Database", dl(database=None), "MissingParameter", 400, "Database"),
              ("no DBInstanceId", dl(dbinstance_id=None), "MissingParameter", 400, "DBInstanceId")]
    for start, end in [(api_min(BASE + 2 * HOUR), api_min(BASE + HOUR)),
                       (api_min(BASE + HOUR), api_min(BASE + HOUR)),
                       (api_sec(BASE + HOUR + 1000), api_sec(BASE + HOUR))]:
        calls.append((f"{start}..{end}", dl(start_time=start, end_time=end), "InvalidParameter", 400, None))
    for which, name in (("start_time", "StartTime"), ("end_time", "EndTime")):
        calls += [(f"{name}={v}", dl(**{which: v}), "InvalidParameter", 400, name) for v in BAD_TIMES]
    calls += [("Gzip=yes", raw(Gzip="yes"), "InvalidParameter", 400, "Gzip"),
              ("Bom=1", raw(Bom="1"), "InvalidParameter", 400, "Bom")]
    _refused(ex, alice, calls)


def test_slow_sql_and_listing_bad_inputs(ex, alice):
    def slow(**kw):
        base = dict(dbinstance_id=MAIN, region_id=REGION, **FULL)
        base.update(kw)
        return lambda: alice.download_slow_sqlrecords(gpdb.DownloadSlowSQLRecordsRequest(**base))

    calls = [(f"MinDuration={v}", slow(min_duration=v), "InvalidParameter", 400, "MinDuration")
             for v in ("-1", "abc", "1.5")]
    calls += [(f"MaxDuration={v}", slow(max_duration=v), "InvalidParameter", 400, "MaxDuration")
              for v in ("-1", "ten")]
    calls += [("MinDuration > MaxDuration", slow(min_duration="10", max_duration="5"), "InvalidParameter", 400,
               None),
              ("EndTime before StartTime", slow(start_time=api_min(BASE + HOUR), end_time=api_min(BASE)),
               "InvalidParameter", 400, None),
              ("StartTime=yesterday", slow(start_time="yesterday"), "InvalidParameter", 400, "StartTime"),
              ("no DBInstanceId", slow(dbinstance_id=None), "MissingParameter", 400, "DBInstanceId"),
              ("DownloadTaskType=BOGUS", lambda: alice.describe_download_records(gpdb.DescribeDownloadRecordsRequest(
                  dbinstance_id=MAIN, download_task_type="BOGUS")), "InvalidParameter", 400, "DownloadTaskType"),
              ("DescribeDownloadRecords without DBInstanceId",
               lambda: alice.describe_download_records(gpdb.DescribeDownloadRecordsRequest()),
               "MissingParameter", 400, "DBInstanceId")]
    _refused(ex, alice, calls)


# ------------------------------------------------------------------------------------------------
# Per-account limit and CancelDownloadTask: an API-only node (no workers) keeps exports running
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def idle(server_factory):
    srv = start_server_with(server_factory, "exports-idle",
                            exports={"workers": 0, "max_running_per_account": 2}, calls_per_second=100_000)
    yield srv
    server_factory.stop(srv)


def cancel(client, download_id: str, instance: str = MAIN) -> Dict[str, Any]:
    return raw_call(client, "CancelDownloadTask", {"DBInstanceId": instance, "DownloadId": download_id})


def test_limit_and_cancel(idle, mode, world):
    alice = idle.client(mode, "alice")
    bob = idle.client(mode, "bob")
    started: List[Tuple[Any, str, str]] = []   # (client, instance, id) still running

    def start(client, instance=MAIN, slow=False) -> str:
        if slow:
            i = check_started(raw_call(client, "DownloadSlowSQLRecords", {"DBInstanceId": instance, **{
                "StartTime": FULL["start_time"], "EndTime": FULL["end_time"]}}), instance)
        else:
            i = start_diagnosis(client, instance=instance, database="sales", **FULL)
        started.append((client, instance, i))
        return i

    try:
        first = start(alice)
        second = start(alice, slow=True)
        listed = list_downloads(alice)
        assert listed[int(first)]["Status"] == "running", listed
        assert listed[int(first)]["DownloadUrl"] == "" and listed[int(first)]["ExceptionMsg"] == ""
        assert listed[int(first)]["FileName"] == file_name(FULL["start_time"], FULL["end_time"])
        assert list_downloads(alice, task_type=SLOW_SQL)[int(second)]["Status"] == "running"
        # The third running export of the account is refused, whichever kind, on any of its instances.
        for third in (lambda: alice.download_diagnosis_records(gpdb.DownloadDiagnosisRecordsRequest(
                          dbinstance_id=MAIN, database="sales", **FULL)),
                      lambda: alice.download_diagnosis_records(gpdb.DownloadDiagnosisRecordsRequest(
                          dbinstance_id="gp-alice-ok2", database="sales", **FULL)),
                      lambda: alice.download_slow_sqlrecords(gpdb.DownloadSlowSQLRecordsRequest(
                          dbinstance_id=MAIN, region_id=REGION, **FULL))):
            world.expect_error(third, "QuotaExceeded.DownloadTasks", 400)
        assert set(list_downloads(alice)) == set(listed), "a refused export was recorded"
        # Bob has his own allowance.
        start(bob, instance=BOB)

        # Cancel: bob cannot reach alice's instance, nor her download through his own.
        world.expect_error(lambda: cancel(bob, first), "InvalidDBInstanceId.NotFound", 404)
        world.expect_error(lambda: cancel(bob, first, instance=BOB), "InvalidDownloadId.NotFound", 404)
        world.expect_error(lambda: cancel(alice, "999999999"), "InvalidDownloadId.NotFound", 404)
        # The download belongs to MAIN, not to alice's other instance.
        world.expect_error(lambda: cancel(alice, first, instance="gp-alice-ok2"), "InvalidDownloadId.NotFound", 404)
        e = world.expect_error(lambda: raw_call(alice, "CancelDownloadTask", {"DBInstanceId": MAIN}),
                               "MissingParameter", 400)
        assert "DownloadId" in e.data["Message"], e.data
        world.expect_error(lambda: cancel(alice, "abc"), "InvalidParameter", 400)

        body = cancel(alice, first)
        assert (body.get("DownloadId"), body.get("DBInstanceId"), body.get("Status")) == (first, MAIN, "failed"), body
        started[:] = [s for s in started if s[2] != first]
        record = list_downloads(alice)[int(first)]
        assert (record["Status"], record["ExceptionMsg"], record["DownloadUrl"]) == ("failed", "canceled", ""), record
        world.expect_error(lambda: cancel(alice, first), "IncorrectDownloadTaskState", 400)
        # With one canceled, another may start; then the limit holds again.
        start(alice)
        world.expect_error(lambda: alice.download_diagnosis_records(gpdb.DownloadDiagnosisRecordsRequest(
            dbinstance_id=MAIN, database="sales", **FULL)), "QuotaExceeded.DownloadTasks", 400)
        # Slow SQL exports are canceled the same way and listed under their type.
        body = cancel(alice, second)
        assert body.get("Status") == "failed", body
        started[:] = [s for s in started if s[2] != second]
        slow_rec = list_downloads(alice, task_type=SLOW_SQL)[int(second)]
        assert (slow_rec["Status"], slow_rec["ExceptionMsg"], slow_rec["DownloadUrl"]) == ("failed", "canceled", "")
    finally:
        # Leave nothing running for the other signing mode.
        for client, instance, i in started:
            cancel(client, i, instance=instance)
