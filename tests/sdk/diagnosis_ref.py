"""Shared by the diagnosis and export SDK suites: the query-record model, the deterministic corpus,
the Python reference of the listing semantics (filter / sort / page, mirroring
`RecordFilter::matches`), the `Diag` mirror of what was imported with `gpdiag records import`, and
the DescribeDiagnosisRecords call helpers. Not a test module.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from alibabacloud_gpdb20160503 import models as gpdb

UTC = timezone.utc
HOUR = 3_600_000
MINUTE = 60_000
THRESHOLD = 5120
PERF_THRESHOLD = 10_000

# The fixed corpus lives in [BASE, BASE + 4h); a few records sit on and just outside the edges.
BASE = int(datetime(2026, 11, 1, 8, 0, tzinfo=UTC).timestamp()) * 1000
SPAN = 4 * HOUR

MAIN = "gp-alice-ok"      # alice, storage elastic, 6.3.10.1: the main corpus (never changed)
OTHER = "gp-alice-ok2"    # alice's second instance: leak checks and the re-import tests
EMPTY = "gp-alice-v7"     # alice, passes the gate, no records
BOB = "gp-bob-ok"         # bob's instance: his records must never reach alice

DATABASES = ["sales", "analytics", "ops", "报表"]
USERS = ["app", "etl", "ETL", "report", "Zoë", "admin"]


# ------------------------------------------------------------------------------------------------
# Records and the reference semantics
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rec:
    query_id: str
    session_id: str
    database: str
    user: str
    start_ms: int
    duration_ms: int
    status: str = "finished"
    error: Optional[str] = None
    sql: str = "SELECT 1"
    plan_json: Optional[str] = None
    plan_text: Optional[str] = None
    rows: Optional[int] = None
    source: str = "sdk-test"

    def to_line(self) -> str:
        return json.dumps({
            "query_id": self.query_id,
            "session_id": self.session_id,
            "database": self.database,
            "user": self.user,
            "start_time": rfc3339_ms(self.start_ms),
            "duration_ms": self.duration_ms,
            "status": self.status,
            "error": self.error,
            "sql": self.sql,
            "plan_json": self.plan_json,
            "plan_text": self.plan_text,
            "rows": self.rows,
            "source": self.source,
        }, ensure_ascii=False)


def rfc3339_ms(ms: int) -> str:
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def api_min(ms: int) -> str:
    """`yyyy-MM-ddTHH:mmZ` (ms must be on a whole minute)."""
    assert ms % MINUTE == 0, ms
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def api_sec(ms: int) -> str:
    """`yyyy-MM-ddTHH:mm:ssZ` (ms must be on a whole second)."""
    assert ms % 1000 == 0, ms
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_api_time(s: str) -> int:
    for fmt in ("%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return int(datetime.strptime(s, fmt).replace(tzinfo=UTC).timestamp()) * 1000
        except ValueError:
            pass
    raise ValueError(s)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def floor_minute(ms: int) -> int:
    return ms - ms % MINUTE


def ref_window(start: Optional[str], end: Optional[str]):
    """[start, end) in ms: End defaults to now, Start to End - 1h."""
    end_ms = parse_api_time(end) if end else now_ms()
    start_ms = parse_api_time(start) if start else end_ms - HOUR
    return start_ms, end_ms


def ref_select(recs: Iterable[Rec], database: Optional[str], start_ms: int, end_ms: int,
               user: Optional[str] = None, keyword: Optional[str] = None,
               cond: Optional[str] = None) -> List[Rec]:
    """The reference filter (RecordFilter::matches) plus the maxCost cut; database None = all."""
    out = [r for r in recs
           if (database is None or r.database == database) and start_ms <= r.start_ms < end_ms
           and (user is None or r.user == user)
           and (not keyword or keyword.lower() in r.sql.lower())]
    if cond is None:
        return out
    c = json.loads(cond)
    t = c["Type"]
    if t == "status":
        return [r for r in out if r.status == c["Value"]]
    if t == "cost":
        lo = c.get("Min")
        hi = c.get("Max")
        lo = None if lo in (None, "") else int(lo)
        hi = None if hi in (None, "") else int(hi)
        return [r for r in out if (lo is None or r.duration_ms >= lo) and (hi is None or r.duration_ms < hi)]
    if t == "maxCost":
        n = int(c["Value"])
        return sorted(out, key=lambda r: (-r.duration_ms, r.query_id))[:n]
    raise AssertionError(f"reference cannot evaluate {cond}")


def ref_order(order: Optional[str]):
    if not order:
        return "StartTime", True
    o = json.loads(order)
    if isinstance(o, list):
        assert len(o) == 1
        o = o[0]
    return o["Field"], o.get("Type", "Desc").lower() == "desc"


def ref_sort(recs: List[Rec], order: Optional[str] = None) -> List[Rec]:
    field, desc = ref_order(order)
    if field == "StartTime":
        key = lambda r: (r.start_ms, r.query_id)  # noqa: E731
    else:
        key = lambda r: (r.duration_ms, r.query_id)  # noqa: E731
    return sorted(recs, key=key, reverse=desc)


def ref_item(r: Rec) -> Dict[str, Any]:
    return {
        "Database": r.database,
        "Duration": r.duration_ms // 1000,
        "QueryID": r.query_id,
        "SQLStmt": r.sql[:THRESHOLD],
        "SQLTruncated": len(r.sql) > THRESHOLD,
        "SQLTruncatedThreshold": THRESHOLD,
        "SessionID": r.session_id,
        "StartTime": r.start_ms,
        "Status": r.status,
        "User": r.user,
    }


def ref_perf(r: Rec) -> Dict[str, Any]:
    return {"QueryID": r.query_id, "StartTime": r.start_ms, "Cost": r.duration_ms, "Status": r.status,
            "User": r.user, "Database": r.database}


def ref_metrics(plan_json: Optional[str]) -> List[tuple]:
    """(NodeType, ActualTotalTime) of every plan node, most expensive first."""
    if not plan_json:
        return []
    plan = json.loads(plan_json)
    roots = [i["Plan"] for i in plan if "Plan" in i] if isinstance(plan, list) else (
        [plan["Plan"]] if "Plan" in plan else [])
    nodes: List[tuple] = []

    def walk(n):
        nodes.append((n["Node Type"], float(n.get("Actual Total Time", 0.0))))
        for child in n.get("Plans", []):
            walk(child)

    for root in roots:
        walk(root)
    return sorted(nodes, key=lambda x: -x[1])


def like_pattern_matches(keyword: str, text: str) -> bool:
    """What ILIKE '%keyword%' would do if % and _ were left as wildcards (the bug to catch)."""
    rx = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in keyword)
    return re.search(rx, text, re.I | re.S) is not None


# ------------------------------------------------------------------------------------------------
# The deterministic corpus
# ------------------------------------------------------------------------------------------------

PLAN_AUTO_EXPLAIN = json.dumps({
    "Query Text": "SELECT c.name, sum(o.total) FROM customers c JOIN orders o ON o.cid = c.id GROUP BY 1",
    "Plan": {
        "Node Type": "Aggregate", "Strategy": "Hashed", "Actual Startup Time": 410.5,
        "Actual Total Time": 455.25, "Actual Rows": 120, "Actual Loops": 1,
        "Plans": [
            {"Node Type": "Hash Join", "Actual Total Time": 401.0, "Actual Rows": 50000, "Actual Loops": 1,
             "Plans": [
                 {"Node Type": "Seq Scan", "Relation Name": "orders", "Actual Total Time": 250.75,
                  "Actual Rows": 50000, "Actual Loops": 1},
                 {"Node Type": "Hash", "Actual Total Time": 12.5, "Actual Rows": 120, "Actual Loops": 1,
                  "Plans": [{"Node Type": "Seq Scan", "Relation Name": "customers",
                             "Actual Total Time": 11.125, "Actual Rows": 120, "Actual Loops": 1}]},
             ]},
        ],
    },
})
PLAN_EXPLAIN_ARRAY = json.dumps([{
    "Plan": {
        "Node Type": "Gather Motion", "Actual Total Time": 80.5, "Actual Rows": 10, "Actual Loops": 1,
        "Plans": [
            {"Node Type": "Sort", "Actual Total Time": 3.5, "Actual Rows": 10, "Actual Loops": 1,
             "Plans": [{"Node Type": "Index Scan", "Relation Name": "events", "Actual Total Time": 95.0,
                        "Actual Rows": 10, "Actual Loops": 2}]},
        ],
    },
    "Planning Time": 0.4,
    "Execution Time": 96.1,
}], indent=2)
TEXT_PLAN = ("HashAggregate  (cost=10.00..12.00 rows=120 width=40) (actual time=410.5..455.2 rows=120 loops=1)\n"
             "  ->  Hash Join  (cost=1.00..9.00 rows=50000 width=16)\n"
             "        ->  Seq Scan on orders\n"
             "        ->  Hash\n"
             "              ->  Seq Scan on customers")

LONG_SQL = "SELECT " + ", ".join(f"col_{i:04d}" for i in range(700)) + " /* needle_after_cut */ FROM wide_table"
EXACT_SQL = ("SELECT '" + "x" * (THRESHOLD - 16) + "' AS pad")  # exactly 5120 characters
CJK_LONG_SQL = "SELECT '" + "中" * (THRESHOLD - 13) + "' AS 宽"   # 5121 characters, 3 bytes each
assert len(LONG_SQL) > THRESHOLD + 100 and LONG_SQL.index("needle_after_cut") > THRESHOLD
assert len(EXACT_SQL) == THRESHOLD
assert len(CJK_LONG_SQL) == THRESHOLD + 1
MULTILINE_SQL = ("SELECT id,\n       total\nFROM orders\r\nWHERE total > 100\n"
                 "\t-- trailing comment with 'quotes'\nORDER BY id;\n")

# SQL texts built to catch wildcard, escaping, case-folding and injection mistakes.
SPECIAL_SQL = {
    "pct-literal": "SELECT '100%' AS pct FROM metrics",
    "pct-trap": "SELECT 100 AS pct_total FROM metrics",
    "pct-dash-trap": "SELECT 'pct-total' AS label",
    "underscore-literal": "SELECT a_b FROM t_x",
    "underscore-trap": "SELECT axb FROM tqx",
    "single-quote": "SELECT * FROM people WHERE name = 'O''Brien'",
    "double-quote": 'SELECT "Mixed Case" FROM "Tbl"',
    "backslash": "SELECT E'C:\\\\temp\\\\new' AS path",
    "backslash-trap": "SELECT temp FROM tempdata",
    "cjk": "SELECT * FROM 用户表 WHERE 城市 = '北京' -- 中文注释",
    "zoe-lower": "SELECT * FROM guests WHERE name = 'Zoë'",
    "zoe-upper": "SELECT * FROM GUESTS WHERE NAME = 'ZOË'",
    "zoe-plain": "SELECT * FROM guests WHERE name = 'Zoe'",
    "injection": "SELECT 1 WHERE 'x' = 'x' OR '1'='1'",
    "long": LONG_SQL,
    "exact": EXACT_SQL,
    "cjk-long": CJK_LONG_SQL,
    "multiline": MULTILINE_SQL,
    "nounderscore": "SELECT 1",
}

TEMPLATES = [
    "SELECT * FROM orders WHERE id = {n}",
    "SELECT count(*) FROM order_items WHERE order_id = {n}",
    "UPDATE inventory SET qty = qty - {k} WHERE sku = 'SKU-{n}'",
    "INSERT INTO events (kind, payload) VALUES ('click', '{{\"n\": {n}}}')",
    "SELECT region, sum(amount) FROM sales_fact GROUP BY region",
    "DELETE FROM sessions WHERE last_seen < now() - interval '{k} days'",
    "VACUUM ANALYZE big_table",
    "select lower(name) from Customers where Name ilike 'A%' limit {k}",
    "WITH t AS (SELECT {n} AS v) SELECT v * 2 FROM t",
]

BOUNDARY_DURATIONS = [0, 29, 30, 31, 49, 50, 199, 200, 201, 999, 1000, 1999, 2000, 59_999, 60_000, 60_001]


def _duration(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.55:
        d = rng.randint(1, 300)
    elif r < 0.80:
        d = rng.randint(300, 5_000)
    elif r < 0.95:
        d = rng.randint(5_000, 60_000)
    else:
        d = rng.randint(60_000, 1_800_000)
    if rng.random() < 0.3:  # ties
        d = max(0, round(d, -2))
    return d


def build_main_corpus(live_now_ms: int) -> List[Rec]:
    rng = random.Random(20261101)
    recs: List[Rec] = []
    used = set()

    def qid(prefix="q"):
        while True:
            q = f"{prefix}-{rng.getrandbits(40):010x}"
            if q not in used:
                used.add(q)
                return q

    def pick_db():
        return rng.choices(DATABASES, weights=[50, 30, 15, 5])[0]

    def pick_user():
        return rng.choices(USERS, weights=[30, 20, 10, 20, 10, 10])[0]

    starts: List[int] = []
    for i in range(300):
        if starts and rng.random() < 0.08:
            start = rng.choice(starts)  # same millisecond as another record
        else:
            start = BASE + rng.randrange(SPAN)
        starts.append(start)
        status = "running" if rng.random() < 0.08 else "finished"
        error = None
        if status == "finished" and rng.random() < 0.08:
            error = rng.choice(["ERROR:  division by zero", "ERROR:  canceling statement due to user request"])
        sql = rng.choice(TEMPLATES).format(n=rng.randint(1, 100_000), k=rng.randint(1, 90))
        recs.append(Rec(query_id=qid(), session_id=f"con{rng.randint(1000, 9999)}", database=pick_db(),
                        user=pick_user(), start_ms=start, duration_ms=_duration(rng), status=status,
                        error=error, sql=sql,
                        rows=None if status == "running" or rng.random() < 0.3 else rng.randint(0, 10**7)))

    # Exact cost boundaries, spread over sales and analytics.
    for j, d in enumerate(BOUNDARY_DURATIONS):
        for db in ("sales", "analytics"):
            recs.append(Rec(query_id=qid("b"), session_id="con-b", database=db, user=("app", "etl")[j % 2],
                            start_ms=BASE + 5 * MINUTE + j * 7_777, duration_ms=d,
                            sql=f"SELECT pg_sleep({d / 1000})", rows=1))
    # Equal start times across several records (ties broken by query_id).
    for j in range(5):
        recs.append(Rec(query_id=qid("t"), session_id="con-t", database="sales", user="report",
                        start_ms=BASE + 2 * HOUR + 12_345, duration_ms=1_500, sql=f"SELECT {j} AS tie"))
    # The window edges (minute and second boundaries).
    for j, at in enumerate([BASE - 1, BASE, BASE + HOUR - 1, BASE + HOUR, BASE + HOUR + 30 * MINUTE + 14_999,
                            BASE + HOUR + 30 * MINUTE + 15_000, BASE + HOUR + 30 * MINUTE + 16_000,
                            BASE + 2 * HOUR - 1, BASE + 2 * HOUR, BASE + SPAN - 1, BASE + SPAN]):
        for db in ("sales", "ops"):
            recs.append(Rec(query_id=qid("e"), session_id="con-e", database=db, user="admin", start_ms=at,
                            duration_ms=100 + j, sql=f"SELECT 'edge {j}'"))
    # Keyword and text-shape specials, all in sales inside the window.
    for j, (name, sql) in enumerate(SPECIAL_SQL.items()):
        recs.append(Rec(query_id=f"s-{name}", session_id="con-s", database="sales",
                        user=("app", "Zoë", "report")[j % 3], start_ms=BASE + 3 * HOUR + j * 61_001,
                        duration_ms=250 + 1000 * j, sql=sql, rows=j))
    # Plans, a running one and a failed one, for SQLInfo.
    recs += [
        Rec("p-auto", "con-p1", "analytics", "report", BASE + 40 * MINUTE + 123, 455_250, sql=json.loads(
            PLAN_AUTO_EXPLAIN)["Query Text"], plan_json=PLAN_AUTO_EXPLAIN, plan_text=TEXT_PLAN, rows=120),
        Rec("p-array", "con-p2", "analytics", "etl", BASE + 41 * MINUTE + 7, 96_100,
            sql="SELECT * FROM events ORDER BY ts DESC LIMIT 10", plan_json=PLAN_EXPLAIN_ARRAY, rows=10),
        Rec("p-textonly", "con-p3", "analytics", "etl", BASE + 42 * MINUTE, 3_001,
            sql="SELECT 42", plan_text="Result  (cost=0.00..0.01 rows=1 width=4)", rows=0),
        Rec("p-running", "con-p4", "ops", "admin", BASE + 43 * MINUTE + 999, 7_777_777, status="running",
            sql="SELECT pg_sleep(100000)"),
        Rec("p-failed", "con-p5", "ops", "etl", BASE + 44 * MINUTE + 1, 12, status="finished",
            error="ERROR:  relation \"nope\" does not exist", sql="SELECT * FROM nope"),
        Rec("shared-id", "con-a", "sales", "app", BASE + 45 * MINUTE, 4_321, sql="SELECT 'alice shared'", rows=3),
    ]
    # For the default window (now - 1h, now): database "live".
    for j, off in enumerate([-70 * MINUTE, -50 * MINUTE, -20 * MINUTE, -5 * MINUTE, 10 * MINUTE]):
        recs.append(Rec(query_id=f"live-{j}", session_id="con-l", database="live", user="app",
                        start_ms=live_now_ms + off, duration_ms=1000 * (j + 1), sql=f"SELECT 'live {j}'"))
    assert len({r.query_id for r in recs}) == len(recs)
    return recs


def build_other_corpus() -> List[Rec]:
    rng = random.Random(7)
    recs = [Rec(query_id=f"o-{i:03d}", session_id="con-o", database=("sales", "reimp")[i % 2],
                user=("app", "loader")[i % 3 == 0], start_ms=BASE + rng.randrange(SPAN),
                duration_ms=rng.randint(1, 90_000), sql=f"SELECT 'other {i}' FROM OTHERSECRET")
            for i in range(40)]
    # A record whose user and database nobody else has: the dimension test moves it.
    recs.append(Rec("o-solo", "con-o", "solo_db", "solo_user", BASE + HOUR, 1_234, sql="SELECT 'solo'"))
    return recs


def build_bob_corpus() -> List[Rec]:
    recs = [Rec(query_id=f"bob-{i:03d}", session_id="con-bob", database=("sales", "bobdb")[i % 2],
                user="bob_user", start_ms=BASE + i * 7 * MINUTE, duration_ms=1_000 * i,
                sql=f"SELECT 'BOBSECRET {i}'") for i in range(20)]
    recs.append(Rec("shared-id", "con-bob", "sales", "bob_user", BASE + 45 * MINUTE, 99_000,
                    sql="SELECT 'BOBSECRET shared'", rows=77))
    return recs


# ------------------------------------------------------------------------------------------------
# The dedicated server, its records, and the call helpers
# ------------------------------------------------------------------------------------------------

class Diag:
    """The dedicated server plus a Python mirror of every record imported into it."""

    def __init__(self, server, workdir: Path):
        self.server = server
        self.workdir = workdir
        self.model: Dict[str, Dict[str, Rec]] = {}
        self._n = 0

    def import_records(self, instance: str, recs: List[Rec]) -> None:
        self._n += 1
        path = self.workdir / f"import-{self._n:03d}-{instance}.jsonl"
        path.write_text("".join(r.to_line() + "\n" for r in recs), encoding="utf-8")
        self.server.cli("records", "import", "--instance", instance, str(path), timeout=60)
        slot = self.model.setdefault(instance, {})
        for r in recs:
            slot[r.query_id] = r  # (instance, query_id) replaces, never duplicates

    def recs(self, instance: str) -> List[Rec]:
        return list(self.model.get(instance, {}).values())

    def rec(self, instance: str, query_id: str) -> Rec:
        return self.model[instance][query_id]


def call_records(client, instance=MAIN, database="sales", **kw) -> Dict[str, Any]:
    resp = client.describe_diagnosis_records(
        gpdb.DescribeDiagnosisRecordsRequest(dbinstance_id=instance, database=database, **kw))
    assert resp.status_code == 200
    body = resp.body.to_map()
    assert "Code" not in body
    assert isinstance(body.get("RequestId"), str) and body["RequestId"]
    return body


FULL = dict(start_time=api_min(BASE), end_time=api_min(BASE + SPAN))


def expected_records(diag: Diag, instance=MAIN, database="sales", start_time=None, end_time=None, user=None,
                     keyword=None, query_condition=None, order=None) -> List[Rec]:
    s, e = ref_window(start_time, end_time)
    sel = ref_select(diag.recs(instance), database, s, e, user, keyword, query_condition)
    return ref_sort(sel, order)


def all_items(client, **kw) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    n = 1
    while True:
        body = call_records(client, page_size=100, page_number=n, **kw)
        out += body["Items"]
        if not body["Items"] or len(out) >= body["TotalCount"]:
            return out
        n += 1


CANNED_CONDITIONS = [
    '{"Type":"maxCost", "Value":"100"}',
    '{"Type":"status","Value":"finished"}',
    '{"Type":"status","Value":"running"}',
    '{"Type":"cost","Max":"200"}',
    '{"Type":"cost","Min":"200","Max":"60000"}',
    '{"Type":"cost","Min":"60000"}',
    '{"Type":"cost","Min":"30","Max":"50"}',
]


BAD_CONDITIONS = [
    '{"Type":"maxCost","Value":"100"',            # invalid JSON
    "maxCost",
    "[]",
    '{"Type":"fast","Value":"1"}',                # unknown Type
    '{"Value":"1"}',                              # no Type
    '{"Type":"cost","Min":"-1"}',                 # negative Min
    '{"Type":"cost","Min":"-5","Max":"10"}',
    '{"Type":"cost","Max":"-1"}',
    '{"Type":"cost","Min":"500","Max":"100"}',    # Min > Max
    '{"Type":"cost","Min":"abc"}',
    '{"Type":"maxCost","Value":"0"}',             # maxCost 0
    '{"Type":"maxCost","Value":"-3"}',
    '{"Type":"maxCost","Value":"ten"}',           # non-numeric
    '{"Type":"maxCost","Value":"1.5"}',
    '{"Type":"maxCost"}',
    '{"Type":"status","Value":"done"}',
    '{"Type":"status"}',
]


BAD_TIMES = [
    "2026-11-01",
    "2026-11-01T09:00",
    "2026-11-01 09:00Z",
    "2026-11-01T25:00Z",
    "2026-11-31T09:00Z",
    "2026/11/01T09:00Z",
    "2026-11-01T09:00+08:00",
    "2026-11-01T09:00:00.000Z",
    "1793523600000",
    "yesterday",
]
