"""The diagnosis read actions, driven through the official SDK in both signing modes (fixture
`mode`: acs3, v2): DescribeDiagnosisRecords, DescribeDiagnosisSQLInfo, DescribeDiagnosisDimensions
and DescribeDiagnosisMonitorPerformance.

Records enter a dedicated server through `gpdiag records import --instance ID FILE`. Every
expectation is computed here, in Python, from the records this module imported (a reference
filter / sort / page implementation mirroring `RecordFilter::matches`, shared with the export suite
in `diagnosis_ref.py`), never hard-coded.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Dict, List

import pytest

from alibabacloud_gpdb20160503 import models as gpdb

from diagnosis_ref import (  # noqa: F401 - the shared reference and corpus
    HOUR, MINUTE, THRESHOLD, PERF_THRESHOLD, BASE, SPAN, MAIN, OTHER, EMPTY, BOB, DATABASES, Rec,
    api_min, api_sec, now_ms, floor_minute, ref_window, ref_select, ref_order, ref_sort, ref_item,
    ref_perf, ref_metrics, like_pattern_matches, MULTILINE_SQL, build_main_corpus,
    build_other_corpus, build_bob_corpus, Diag, call_records, FULL, expected_records, all_items,
    CANNED_CONDITIONS, BAD_CONDITIONS, BAD_TIMES,
)


# ------------------------------------------------------------------------------------------------
# The dedicated server and the call helpers
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diag(server_factory, tmp_path_factory) -> Diag:
    srv = server_factory.start("diag")
    d = Diag(srv, tmp_path_factory.mktemp("diag-import"))
    d.live_now = now_ms()
    d.import_records(MAIN, build_main_corpus(d.live_now))
    d.import_records(OTHER, build_other_corpus())
    d.import_records(BOB, build_bob_corpus())
    yield d
    server_factory.stop(srv)


@pytest.fixture
def dalice(diag, mode):
    return diag.server.client(mode, "alice")


@pytest.fixture
def dbob(diag, mode):
    return diag.server.client(mode, "bob")


def call_sqlinfo(client, query_id, instance=MAIN, database="sales") -> Dict[str, Any]:
    resp = client.describe_diagnosis_sqlinfo(
        gpdb.DescribeDiagnosisSQLInfoRequest(dbinstance_id=instance, database=database, query_id=query_id))
    assert resp.status_code == 200
    return resp.body.to_map()


def call_dimensions(client, instance=MAIN) -> Dict[str, Any]:
    resp = client.describe_diagnosis_dimensions(gpdb.DescribeDiagnosisDimensionsRequest(dbinstance_id=instance))
    assert resp.status_code == 200
    return resp.body.to_map()


def call_perf(client, instance=MAIN, database="sales", **kw) -> Dict[str, Any]:
    resp = client.describe_diagnosis_monitor_performance(
        gpdb.DescribeDiagnosisMonitorPerformanceRequest(dbinstance_id=instance, database=database, **kw))
    assert resp.status_code == 200
    return resp.body.to_map()


def check_page(client, diag: Diag, *, instance=MAIN, database="sales", page_number=None, page_size=None,
               **kw) -> List[Rec]:
    """One page against the reference; returns the whole expected (sorted) selection."""
    want = expected_records(diag, instance, database, **kw)
    body = call_records(client, instance, database, page_number=page_number, page_size=page_size, **kw)
    n, size = page_number or 1, page_size or 30
    page = want[(n - 1) * size: n * size]
    got_ids = [i.get("QueryID") for i in body["Items"]]
    assert got_ids == [r.query_id for r in page], (
        f"page {n}/size {size} of {kw}: got {len(got_ids)} ids, want {len(page)}\n got {got_ids}\nwant "
        f"{[r.query_id for r in page]}")
    assert body["Items"] == [ref_item(r) for r in page]
    assert body["TotalCount"] == len(want), kw
    assert body["PageNumber"] == n
    return want


def check_all_pages(client, diag: Diag, page_size=100, **kw) -> List[Rec]:
    want = expected_records(diag, kw.get("instance", MAIN), kw.get("database", "sales"),
                            **{k: v for k, v in kw.items() if k not in ("instance", "database")})
    pages = max(1, -(-len(want) // page_size))
    for n in range(1, pages + 1):
        check_page(client, diag, page_number=n, page_size=page_size, **kw)
    return want


def check_perf(client, diag: Diag, *, instance=MAIN, database="sales", **kw) -> List[Rec]:
    s, e = ref_window(kw.get("start_time"), kw.get("end_time"))
    sel = ref_select(diag.recs(instance), database, s, e, kw.get("user"), None, kw.get("query_condition"))
    want = ref_sort(sel, '[{"Field":"StartTime","Type":"Asc"}]')
    body = call_perf(client, instance, database, **kw)
    assert [p.get("QueryID") for p in body["Performances"]] == [r.query_id for r in want], kw
    assert body["Performances"] == [ref_perf(r) for r in want]
    assert body["PerformancesThreshold"] == PERF_THRESHOLD
    assert body["PerformancesTruncated"] is False
    return want


# ------------------------------------------------------------------------------------------------
# DescribeDiagnosisRecords: listing, order, window, user
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("database", DATABASES)
def test_records_full_window_every_database(dalice, diag, database):
    want = check_all_pages(dalice, diag, database=database, **FULL)
    assert want, f"corpus has no {database} records in the window"


def test_records_item_shape(dalice, diag):
    body = call_records(dalice, **FULL, page_size=100)
    assert body["Items"], body
    types = {"Database": str, "Duration": int, "QueryID": str, "SQLStmt": str, "SQLTruncated": bool,
             "SQLTruncatedThreshold": int, "SessionID": str, "StartTime": int, "Status": str, "User": str}
    for item in body["Items"]:
        assert set(item) == set(types), item
        for k, t in types.items():
            assert type(item[k]) is t, f"{k} must be {t.__name__}: {item!r}"
        assert item["Status"] in ("running", "finished")
    for k in ("PageNumber", "TotalCount"):
        assert type(body[k]) is int


ORDERS = [
    None,
    '[{"Field":"StartTime","Type":"Desc"}]',
    '[{"Field":"StartTime","Type":"Asc"}]',
    '[{"Field":"Duration","Type":"Desc"}]',
    '[{"Field":"Duration","Type":"Asc"}]',
    '[ { "Type" : "Asc" , "Field" : "Duration" } ]',
]


@pytest.mark.parametrize("order", ORDERS)
def test_records_order(dalice, diag, order):
    want = check_all_pages(dalice, diag, page_size=50, order=order, **FULL)
    # The corpus must make tie-breaking matter for both fields.
    keys = [(r.start_ms if ref_order(order)[0] == "StartTime" else r.duration_ms) for r in want]
    assert len(keys) != len(set(keys)), "corpus has no ties on the sort field"


def test_records_default_order_is_start_time_desc(dalice, diag):
    body = call_records(dalice, **FULL, page_size=100)
    starts = [(i["StartTime"], i["QueryID"]) for i in body["Items"]]
    assert starts == sorted(starts, reverse=True)


def test_records_start_time_ties_break_by_query_id(dalice, diag):
    at = BASE + 2 * HOUR + 12_345
    tied = sorted(r.query_id for r in diag.recs(MAIN) if r.start_ms == at and r.database == "sales")
    assert len(tied) >= 5
    window = dict(start_time=api_sec(floor_minute(at)), end_time=api_sec(floor_minute(at) + MINUTE))
    for order, ids in (('[{"Field":"StartTime","Type":"Asc"}]', tied),
                       ('[{"Field":"StartTime","Type":"Desc"}]', tied[::-1]),
                       (None, tied[::-1])):
        body = call_records(dalice, order=order, **window)
        got = [i["QueryID"] for i in body["Items"] if i["StartTime"] == at]
        assert got == ids, order
        check_page(dalice, diag, order=order, **window)


@pytest.mark.parametrize("start,end", [
    (BASE + HOUR, BASE + 2 * HOUR),                       # minute form
    (BASE, BASE + HOUR),
    (BASE - HOUR, BASE + 10 * HOUR),
    (BASE + HOUR + 30 * MINUTE + 15_000, BASE + HOUR + 30 * MINUTE + 16_000),  # one second, seconds form
    (BASE + HOUR + 30 * MINUTE, BASE + HOUR + 30 * MINUTE + 15_000),
])
def test_records_window_is_half_open(dalice, diag, start, end):
    fmt = api_min if start % MINUTE == 0 and end % MINUTE == 0 else api_sec
    window = dict(start_time=fmt(start), end_time=fmt(end))
    for db in ("sales", "ops"):
        want = check_all_pages(dalice, diag, database=db, **window)
        starts = {r.start_ms for r in want}
        edges = {r.start_ms for r in diag.recs(MAIN) if r.database == db}
        assert start in edges or end in edges or start < BASE, "corpus has no record on either edge"
        assert end not in starts, "the end edge is exclusive"
        assert (start in starts) == (start in edges), "the start edge is inclusive"


def test_records_seconds_and_minutes_forms_agree(dalice, diag):
    a = call_records(dalice, start_time=api_min(BASE + HOUR), end_time=api_min(BASE + 2 * HOUR), page_size=100)
    b = call_records(dalice, start_time=api_sec(BASE + HOUR), end_time=api_sec(BASE + 2 * HOUR), page_size=100)
    assert a["Items"] == b["Items"] and a["TotalCount"] == b["TotalCount"]


def test_records_default_window_is_last_hour(dalice, diag):
    want = check_page(dalice, diag, database="live")
    assert sorted(r.query_id for r in want) == sorted(
        r.query_id for r in diag.recs(MAIN)
        if r.database == "live" and diag.live_now - HOUR < r.start_ms < diag.live_now)
    assert len(want) == 3


def test_records_only_start_time_ends_now(dalice, diag):
    start = api_min(floor_minute(now_ms() - 55 * MINUTE))
    want = check_page(dalice, diag, database="live", start_time=start)
    assert [r.query_id for r in want] == ["live-3", "live-2", "live-1"]  # sanity of the reference itself
    # On the fixed corpus: from BASE + 3h up to now.
    check_all_pages(dalice, diag, start_time=api_min(BASE + 3 * HOUR))


def test_records_only_end_time_starts_an_hour_before(dalice, diag):
    end = api_min(floor_minute(now_ms() - 40 * MINUTE))
    want = check_page(dalice, diag, database="live", end_time=end)
    assert {r.query_id for r in want} == {"live-0", "live-1"}
    want = check_all_pages(dalice, diag, end_time=api_min(BASE + 2 * HOUR))
    assert want and all(BASE + HOUR <= r.start_ms < BASE + 2 * HOUR for r in want)


@pytest.mark.parametrize("user", ["etl", "ETL", "Zoë", "admin", "nobody"])
def test_records_user_is_exact(dalice, diag, user):
    want = check_all_pages(dalice, diag, user=user, **FULL)
    assert all(r.user == user for r in want)
    if user != "nobody":
        assert want


def test_records_unknown_database_is_empty(dalice, diag):
    body = call_records(dalice, database="no_such_db", **FULL)
    assert body["Items"] == [] and body["TotalCount"] == 0 and body["PageNumber"] == 1


# ------------------------------------------------------------------------------------------------
# QueryCondition
# ------------------------------------------------------------------------------------------------

OTHER_CONDITIONS = [
    '{"Type":"maxCost","Value":"1"}',
    '{"Type":"maxCost","Value":"7"}',
    '{"Type":"maxCost","Value":"45"}',
    '{"Type":"maxCost","Value":"10000"}',
    '{"Value":"3","Type":"maxCost"}',
    '{"Type":"cost","Min":"0"}',
    '{"Type":"cost","Max":"30"}',
    '{"Type":"cost","Min":"1000","Max":"2000"}',
    '{"Type":"cost","Min":"1000","Max":"1000"}',   # empty range: Min <= d < Max
    '{"Type":"cost","Min":"31","Max":"49"}',
    ' { "Max" : "50" , "Type" : "cost" , "Min" : "30" } ',
    '{"Type":"cost","Min":30,"Max":50}',
]


@pytest.mark.parametrize("cond", CANNED_CONDITIONS + OTHER_CONDITIONS)
def test_records_query_condition(dalice, diag, cond):
    for db in ("sales", "analytics"):
        want = check_all_pages(dalice, diag, database=db, query_condition=cond, **FULL)
        if '"1000","Max":"1000"' not in cond and db == "sales":
            assert want, f"corpus selects nothing for {cond}"


@pytest.mark.parametrize("cond", [c for c in CANNED_CONDITIONS if '"cost"' in c])
def test_records_cost_bounds_min_inclusive_max_exclusive(dalice, diag, cond):
    c = json.loads(cond)
    for db in ("sales", "analytics"):
        durations = {r.duration_ms for r in ref_select(diag.recs(MAIN), db, BASE, BASE + SPAN)}
        for bound in ("Min", "Max"):
            if bound in c:
                assert int(c[bound]) in durations, f"corpus lacks a {db} record exactly at {bound}"
        want = check_all_pages(dalice, diag, database=db, query_condition=cond, **FULL)
        got = {r.duration_ms for r in want}
        if "Min" in c:
            assert int(c["Min"]) in got, "Min is inclusive"
        if "Max" in c:
            assert int(c["Max"]) not in got, "Max is exclusive"


@pytest.mark.parametrize("order", ORDERS[1:5])
def test_records_max_cost_is_cut_then_sorted_and_paged(dalice, diag, order):
    """maxCost N selects the N longest (ties by query_id ascending), then Order and paging apply."""
    cond = '{"Type":"maxCost","Value":"45"}'
    want = expected_records(diag, query_condition=cond, order=order, **FULL)
    assert len(want) == 45
    check_page(dalice, diag, query_condition=cond, order=order, page_size=30, page_number=1, **FULL)
    check_page(dalice, diag, query_condition=cond, order=order, page_size=30, page_number=2, **FULL)
    body = call_records(dalice, query_condition=cond, order=order, page_size=30, page_number=3, **FULL)
    assert body["Items"] == [] and body["TotalCount"] == 45


def test_records_max_cost_ties_at_the_cut(dalice, diag):
    """Find an N where the N-th and (N+1)-th longest have equal durations: query_id ascending decides."""
    ranked = sorted(ref_select(diag.recs(MAIN), "sales", BASE, BASE + SPAN),
                    key=lambda r: (-r.duration_ms, r.query_id))
    cuts = [i for i in range(1, len(ranked)) if ranked[i - 1].duration_ms == ranked[i].duration_ms]
    assert cuts, "corpus has no duration ties"
    for n in cuts[:3]:
        cond = json.dumps({"Type": "maxCost", "Value": str(n)})
        want = check_all_pages(dalice, diag, query_condition=cond, order='[{"Field":"Duration","Type":"Desc"}]',
                               **FULL)
        assert {r.query_id for r in want} == {r.query_id for r in ranked[:n]}


def test_records_max_cost_with_user_and_keyword(dalice, diag):
    for kw in (dict(user="etl"), dict(keyword="orders"), dict(user="app", keyword="select")):
        want = check_all_pages(dalice, diag, query_condition='{"Type":"maxCost","Value":"5"}', **kw, **FULL)
        assert len(want) == 5, kw


def test_records_status_conditions_partition(dalice, diag):
    running = call_records(dalice, query_condition='{"Type":"status","Value":"running"}', page_size=100, **FULL)
    finished = call_records(dalice, query_condition='{"Type":"status","Value":"finished"}', page_size=100, **FULL)
    total = call_records(dalice, page_size=100, **FULL)
    assert running["TotalCount"] + finished["TotalCount"] == total["TotalCount"]
    assert running["TotalCount"] > 0
    assert all(i["Status"] == "running" for i in running["Items"])
    # Failed executions stay "finished".
    failed = {r.query_id for r in diag.recs(MAIN) if r.error and r.database == "ops"}
    assert failed
    items = all_items(dalice, database="ops", query_condition='{"Type":"status","Value":"finished"}', **FULL)
    got = {i["QueryID"]: i["Status"] for i in items}
    assert failed <= set(got) and all(got[q] == "finished" for q in failed)


# ------------------------------------------------------------------------------------------------
# Pagination
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page_size", [None, 30, 50, 100])
def test_records_pages_edges(dalice, diag, page_size):
    size = page_size or 30
    want = expected_records(diag, **FULL)
    assert len(want) > 100 and len(want) % size, "the last page must be partial for every size"
    last = -(-len(want) // size)
    for n in (1, 2, last):
        check_page(dalice, diag, page_number=n, page_size=page_size, **FULL)
    for n in (last + 1, last + 50):
        body = call_records(dalice, page_number=n, page_size=page_size, **FULL)
        assert body["Items"] == [], f"page {n} past the last ({last}) must be empty"
        assert body["TotalCount"] == len(want)
        assert body["PageNumber"] == n


def test_records_default_page(dalice, diag):
    want = expected_records(diag, **FULL)
    body = call_records(dalice, **FULL)
    assert len(body["Items"]) == 30 and body["PageNumber"] == 1 and body["TotalCount"] == len(want)


def test_records_exact_last_page(dalice, diag):
    cond = '{"Type":"maxCost","Value":"60"}'
    check_page(dalice, diag, query_condition=cond, page_size=30, page_number=2, **FULL)
    body = call_records(dalice, query_condition=cond, page_size=30, page_number=3, **FULL)
    assert body["Items"] == [] and body["TotalCount"] == 60


@pytest.mark.parametrize("kw", [
    dict(keyword="NO_SUCH_TEXT_ANYWHERE"),
    dict(start_time=api_min(BASE - 5 * HOUR), end_time=api_min(BASE - 4 * HOUR)),
    dict(user="nobody"),
    dict(query_condition='{"Type":"cost","Min":"100000000"}'),
])
def test_records_empty_results(dalice, diag, kw):
    kw = {**FULL, **kw}
    assert expected_records(diag, **kw) == []
    for n in (1, 2):
        body = call_records(dalice, page_number=n, **kw)
        assert body["Items"] == [] and body["TotalCount"] == 0 and body["PageNumber"] == n


# ------------------------------------------------------------------------------------------------
# Keyword
# ------------------------------------------------------------------------------------------------

KEYWORDS = [
    "100%", "%", "_", "a_b", "pct_total", "O''Brien", "'", '"Mixed Case"', '"', "\\temp", "\\",
    "中文", "用户表", "北京", "zoë", "ZOË", "Zoë", "Zoe", " from ", "orders\r\nwhere", "ORDER BY ID;\n",
    "needle_after_cut", "中中中中", "' OR '1'='1", "'; DROP TABLE query_records; --", "%' OR 1=1 --",
    "\" OR \"\"=\"", "select", "SeLeCt * FrOm", "[a-z]", ".*",
]
# Keywords the corpus answers differently if % and _ were wildcards.
TRAP_KEYWORDS = {"100%", "%", "_", "a_b", "pct_total"}


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_records_keyword_is_literal_and_case_insensitive(dalice, diag, keyword):
    want = check_all_pages(dalice, diag, keyword=keyword, **FULL)
    if keyword not in ("'; DROP TABLE query_records; --", "%' OR 1=1 --", '" OR ""="', "[a-z]", ".*"):
        assert want, f"corpus has no SQL containing {keyword!r}"
    in_window = ref_select(diag.recs(MAIN), "sales", BASE, BASE + SPAN)
    if keyword in TRAP_KEYWORDS:
        wildcard = {r.query_id for r in in_window if like_pattern_matches(keyword, r.sql)}
        assert wildcard - {r.query_id for r in want}, f"corpus has no wildcard trap for {keyword!r}"
    # The server still answers normally afterwards (nothing was injected).
    assert call_records(dalice, **FULL)["TotalCount"] == len(in_window)


def test_records_keyword_traps(dalice, diag):
    def ids(kw):
        body = call_records(dalice, keyword=kw, page_size=100, **FULL)
        return {i["QueryID"] for i in body["Items"]}

    assert "s-pct-literal" in ids("100%") and "s-pct-trap" not in ids("100%")
    assert "s-underscore-literal" in ids("a_b") and "s-underscore-trap" not in ids("a_b")
    assert "s-backslash" in ids("\\temp") and "s-backslash-trap" not in ids("\\temp")
    zoe = {"s-zoe-lower", "s-zoe-upper"}
    assert ids("zoë") == zoe and ids("ZOË") == zoe and ids("Zoë") == zoe
    assert "s-zoe-plain" not in ids("zoë") and ids("Zoe") >= {"s-zoe-plain"}
    assert ids("'; DROP TABLE query_records; --") == set()


def test_records_keyword_with_user_condition_and_order(dalice, diag):
    check_all_pages(dalice, diag, keyword="select", user="app",
                    query_condition='{"Type":"cost","Min":"200","Max":"60000"}',
                    order='[{"Field":"Duration","Type":"Asc"}]', page_size=30, **FULL)


# ------------------------------------------------------------------------------------------------
# SQL text shapes: long, multi-line
# ------------------------------------------------------------------------------------------------

def test_records_long_sql_is_truncated_in_listings_only(dalice, diag):
    cases = {"s-long": True, "s-exact": False, "s-cjk-long": True}
    for qid, truncated in cases.items():
        rec = diag.rec(MAIN, qid)
        body = call_records(dalice, keyword=rec.sql[-40:] if qid != "s-long" else "needle_after_cut",
                            page_size=100, **FULL)
        items = [i for i in body["Items"] if i["QueryID"] == qid]
        assert len(items) == 1, (qid, body["TotalCount"])
        item = items[0]
        assert item["SQLTruncated"] is truncated, qid
        assert item["SQLTruncatedThreshold"] == THRESHOLD
        assert len(item["SQLStmt"]) == min(len(rec.sql), THRESHOLD)
        assert item["SQLStmt"] == rec.sql[:THRESHOLD]
        info = call_sqlinfo(dalice, qid)
        assert info["SQLStmt"] == rec.sql, f"SQLInfo must carry the full text of {qid}"
    # The keyword matches text beyond the cut, even though the listing does not show it.
    assert "needle_after_cut" not in diag.rec(MAIN, "s-long").sql[:THRESHOLD]


def test_records_multiline_sql_is_verbatim(dalice, diag):
    rec = diag.rec(MAIN, "s-multiline")
    body = call_records(dalice, keyword="orders\r\nWHERE", page_size=100, **FULL)
    items = {i["QueryID"]: i for i in body["Items"]}
    assert items["s-multiline"] == ref_item(rec)
    assert call_sqlinfo(dalice, "s-multiline")["SQLStmt"] == MULTILINE_SQL


# ------------------------------------------------------------------------------------------------
# DescribeDiagnosisSQLInfo
# ------------------------------------------------------------------------------------------------

SQLINFO_IDS = ["p-auto", "p-array", "p-textonly", "p-running", "p-failed", "shared-id", "s-long", "s-cjk",
               "s-multiline", "s-backslash", "s-zoe-lower"]


@pytest.mark.parametrize("qid", SQLINFO_IDS)
def test_sqlinfo(dalice, diag, qid):
    r = diag.rec(MAIN, qid)
    info = call_sqlinfo(dalice, qid, database=r.database)
    metrics = info.pop("SortedMetrics", None)
    assert isinstance(info.pop("RequestId", None), str)
    assert info == {
        "Database": r.database,
        "Duration": r.duration_ms // 1000,
        "MaxOutputRows": "" if r.rows is None else str(r.rows),
        "QueryID": r.query_id,
        "QueryPlan": r.plan_json or "",
        "SQLStmt": r.sql,
        "SessionID": r.session_id,
        "StartTime": r.start_ms,
        "Status": r.status,
        "TextPlan": r.plan_text or "",
        "User": r.user,
    }
    assert isinstance(metrics, str), "SortedMetrics must be a JSON array in a string"
    parsed = json.loads(metrics)
    assert isinstance(parsed, list)
    want = ref_metrics(r.plan_json)
    assert len(want) == {"p-auto": 5, "p-array": 3}.get(qid, 0)
    assert [(m["NodeType"], float(m["ActualTotalTime"])) for m in parsed] == want
    times = [m["ActualTotalTime"] for m in parsed]
    assert times == sorted(times, reverse=True)
    if r.plan_json is None:
        assert metrics == "[]"


@pytest.mark.parametrize("qid,database", [
    ("no-such-query", "sales"),
    ("p-auto", "sales"),          # exists, but in analytics
    ("p-auto", "no_such_db"),
    ("bob-000", "sales"),         # bob's instance has it, alice's does not
    ("o-000", "sales"),           # alice's other instance has it
    ("P-AUTO", "analytics"),      # QueryID is exact
])
def test_sqlinfo_unknown_query(dalice, diag, world, qid, database):
    assert not any(r.query_id == qid and r.database == database for r in diag.recs(MAIN))
    world.expect_error(lambda: call_sqlinfo(dalice, qid, database=database), "InvalidQueryId.NotFound", 404)


def test_sqlinfo_same_query_id_on_two_instances(dalice, dbob, diag):
    a = call_sqlinfo(dalice, "shared-id")
    b = call_sqlinfo(dbob, "shared-id", instance=BOB)
    assert a["SQLStmt"] == diag.rec(MAIN, "shared-id").sql and a["User"] == "app"
    assert b["SQLStmt"] == diag.rec(BOB, "shared-id").sql and b["User"] == "bob_user"


@pytest.mark.parametrize("missing", ["Database", "QueryID", "DBInstanceId"])
def test_sqlinfo_missing_parameter(dalice, world, missing):
    kw = dict(dbinstance_id=MAIN, database="analytics", query_id="p-auto")
    kw[{"Database": "database", "QueryID": "query_id", "DBInstanceId": "dbinstance_id"}[missing]] = None
    e = world.expect_error(lambda: dalice.describe_diagnosis_sqlinfo(gpdb.DescribeDiagnosisSQLInfoRequest(**kw)),
                           "MissingParameter", 400)
    assert missing in e.data["Message"], e.data


# ------------------------------------------------------------------------------------------------
# DescribeDiagnosisDimensions
# ------------------------------------------------------------------------------------------------

def ref_dimensions(diag: Diag, instance: str):
    recs = diag.recs(instance)
    return sorted({r.database for r in recs}), sorted({r.user for r in recs})


@pytest.mark.parametrize("instance", [MAIN, OTHER, EMPTY])
def test_dimensions(dalice, diag, instance):
    body = call_dimensions(dalice, instance)
    dbs, users = ref_dimensions(diag, instance)
    assert body.get("Databases") == dbs
    assert body.get("UserNames") == users
    assert isinstance(body.get("RequestId"), str)
    if instance == MAIN:
        assert "bob_user" not in users and "bobdb" not in dbs
        assert {"etl", "ETL", "Zoë"} <= set(users) and "报表" in dbs


def test_dimensions_bob(dbob, diag):
    body = call_dimensions(dbob, BOB)
    assert (body.get("Databases"), body.get("UserNames")) == ref_dimensions(diag, BOB)


def test_dimensions_missing_instance(dalice, world):
    world.expect_error(lambda: dalice.describe_diagnosis_dimensions(gpdb.DescribeDiagnosisDimensionsRequest()),
                       "MissingParameter", 400)


# ------------------------------------------------------------------------------------------------
# DescribeDiagnosisMonitorPerformance
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cond", [None] + CANNED_CONDITIONS + ['{"Type":"maxCost","Value":"7"}',
                                                                '{"Type":"cost","Min":"1000","Max":"1000"}'])
def test_performance(dalice, diag, cond):
    for db in ("sales", "ops"):
        check_perf(dalice, diag, database=db, query_condition=cond, **FULL)


@pytest.mark.parametrize("kw", [
    dict(user="etl", **FULL),
    dict(user="Zoë", **FULL),
    dict(user="ETL", query_condition='{"Type":"maxCost","Value":"3"}', **FULL),
    dict(start_time=api_min(BASE + HOUR), end_time=api_min(BASE + 2 * HOUR)),
    dict(start_time=api_sec(BASE + HOUR + 30 * MINUTE + 15_000), end_time=api_sec(BASE + 2 * HOUR)),
    dict(end_time=api_min(BASE + 2 * HOUR)),
    dict(start_time=api_min(BASE - 5 * HOUR), end_time=api_min(BASE - 4 * HOUR)),
])
def test_performance_filters(dalice, diag, kw):
    check_perf(dalice, diag, **kw)


def test_performance_default_window(dalice, diag):
    want = check_perf(dalice, diag, database="live")
    assert [r.query_id for r in want] == ["live-1", "live-2", "live-3"]


def test_performance_equal_start_times_by_query_id(dalice, diag):
    at = BASE + 2 * HOUR + 12_345
    body = call_perf(dalice, start_time=api_sec(at - 12_345), end_time=api_sec(at - 12_345 + MINUTE))
    tied = [p["QueryID"] for p in body["Performances"] if p["StartTime"] == at]
    assert len(tied) >= 5 and tied == sorted(tied)


# ------------------------------------------------------------------------------------------------
# Availability gate and isolation between accounts and instances
# ------------------------------------------------------------------------------------------------

def _all_actions(client, instance):
    return {
        "records": lambda: call_records(client, instance, **FULL),
        "sqlinfo": lambda: call_sqlinfo(client, "bob-000", instance=instance),
        "dimensions": lambda: call_dimensions(client, instance),
        "performance": lambda: call_perf(client, instance, **FULL),
    }


@pytest.mark.parametrize("action", ["records", "sqlinfo", "dimensions", "performance"])
@pytest.mark.parametrize("instance,code,status", [
    (BOB, "InvalidDBInstanceId.NotFound", 404),
    ("gp-nobody-0001", "InvalidDBInstanceId.NotFound", 404),
    ("gp-alice-old", "IncorrectModuleVersion", 400),
    ("gp-alice-old2", "IncorrectModuleVersion", 400),
    ("gp-alice-classic", "IncorrectDBInstanceState", 400),
    ("gp-alice-serverless", "IncorrectDBInstanceState", 400),
])
def test_gate(dalice, world, action, instance, code, status):
    world.expect_error(_all_actions(dalice, instance)[action], code, status)


@pytest.mark.parametrize("action", ["records", "sqlinfo", "dimensions", "performance"])
def test_gate_bob_cannot_see_alice(dbob, world, action):
    world.expect_error(_all_actions(dbob, MAIN)[action], "InvalidDBInstanceId.NotFound", 404)


def test_foreign_and_sibling_records_never_show(dalice, dbob, diag):
    for kw in ("BOBSECRET", "OTHERSECRET"):
        body = call_records(dalice, keyword=kw, **FULL)
        assert body["Items"] == [] and body["TotalCount"] == 0, kw
    ids = set()
    for n in (1, 2, 3, 4):
        ids |= {i["QueryID"] for i in call_records(dalice, page_size=100, page_number=n, **FULL)["Items"]}
    assert not any(q.startswith(("bob-", "o-")) for q in ids)
    perf = call_perf(dalice, **FULL)
    assert not any(p["QueryID"].startswith(("bob-", "o-")) for p in perf["Performances"])
    # Bob sees his own, and only his.
    check_all_pages(dbob, diag, instance=BOB, **FULL)
    check_all_pages(dbob, diag, instance=BOB, database="bobdb", **FULL)
    check_perf(dbob, diag, instance=BOB, **FULL)
    # alice's second instance: its own sales records only.
    check_all_pages(dalice, diag, instance=OTHER, **FULL)


# ------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------

def _records_or_perf(client, action, **kw):
    if action == "records":
        return call_records(client, **kw)
    return call_perf(client, **kw)


@pytest.mark.parametrize("action", ["records", "performance"])
@pytest.mark.parametrize("cond", BAD_CONDITIONS)
def test_bad_query_condition(dalice, world, action, cond):
    e = world.expect_error(lambda: _records_or_perf(dalice, action, query_condition=cond, **FULL),
                           "InvalidParameter", 400)
    assert "QueryCondition" in e.data["Message"], e.data


@pytest.mark.parametrize("action", ["records", "performance"])
@pytest.mark.parametrize("which", ["start_time", "end_time"])
@pytest.mark.parametrize("value", BAD_TIMES)
def test_bad_time(dalice, world, action, which, value):
    kw = dict(FULL)
    kw[which] = value
    e = world.expect_error(lambda: _records_or_perf(dalice, action, **kw), "InvalidParameter", 400)
    name = {"start_time": "StartTime", "end_time": "EndTime"}[which]
    assert name in e.data["Message"], e.data


@pytest.mark.parametrize("action", ["records", "performance"])
@pytest.mark.parametrize("start,end", [
    (api_min(BASE + HOUR), api_min(BASE + HOUR)),                    # equal
    (api_sec(BASE + HOUR), api_min(BASE + HOUR)),                    # equal, mixed forms
    (api_min(BASE + 2 * HOUR), api_min(BASE + HOUR)),                # before
    (api_sec(BASE + HOUR + 1000), api_sec(BASE + HOUR)),             # one second before
])
def test_end_not_after_start(dalice, world, action, start, end):
    e = world.expect_error(lambda: _records_or_perf(dalice, action, start_time=start, end_time=end),
                           "InvalidParameter", 400)
    assert "EndTime" in e.data["Message"] or "StartTime" in e.data["Message"], e.data


def test_only_start_time_in_the_future(dalice, world):
    """StartTime alone after now: the default EndTime (now) is not after it."""
    future = api_min(floor_minute(now_ms() + 2 * HOUR))
    world.expect_error(lambda: call_records(dalice, start_time=future), "InvalidParameter", 400)


@pytest.mark.parametrize("size", [7, 0, 10, 31, 1000, -30])
def test_bad_page_size(dalice, world, size):
    e = world.expect_error(lambda: call_records(dalice, page_size=size, **FULL), "InvalidParameter", 400)
    assert "PageSize" in e.data["Message"], e.data


@pytest.mark.parametrize("number", [0, -1])
def test_bad_page_number(dalice, world, number):
    e = world.expect_error(lambda: call_records(dalice, page_number=number, **FULL), "InvalidParameter", 400)
    assert "PageNumber" in e.data["Message"], e.data


@pytest.mark.parametrize("order", [
    "StartTime",
    "[{",
    '[{"Field":"User","Type":"Asc"}]',
    '[{"Field":"StartTime","Type":"Sideways"}]',
    '[{"Field":"","Type":"Asc"}]',
    '[{"Type":"Asc"}]',
    "42",
])
def test_bad_order(dalice, world, order):
    e = world.expect_error(lambda: call_records(dalice, order=order, **FULL), "InvalidParameter", 400)
    assert "Order" in e.data["Message"], e.data


@pytest.mark.parametrize("action", ["records", "performance"])
def test_missing_database(dalice, world, action):
    fn = {"records": dalice.describe_diagnosis_records, "performance": dalice.describe_diagnosis_monitor_performance}
    req = {"records": gpdb.DescribeDiagnosisRecordsRequest,
           "performance": gpdb.DescribeDiagnosisMonitorPerformanceRequest}
    e = world.expect_error(lambda: fn[action](req[action](dbinstance_id=MAIN, **FULL)), "MissingParameter", 400)
    assert "Database" in e.data["Message"], e.data
    e = world.expect_error(lambda: fn[action](req[action](database="sales", **FULL)), "MissingParameter", 400)
    assert "DBInstanceId" in e.data["Message"], e.data


# ------------------------------------------------------------------------------------------------
# Re-import: no duplicates, replacement visible through the API
# ------------------------------------------------------------------------------------------------

def test_reimport_same_file_creates_no_duplicates(dalice, diag):
    before = call_records(dalice, instance=OTHER, database="reimp", page_size=100, **FULL)
    same = [r for r in diag.recs(OTHER) if r.database == "reimp"]
    assert same
    diag.import_records(OTHER, same)
    diag.import_records(OTHER, same)
    after = call_records(dalice, instance=OTHER, database="reimp", page_size=100, **FULL)
    assert after["TotalCount"] == before["TotalCount"] == len(same)
    assert after["Items"] == before["Items"]
    check_all_pages(dalice, diag, instance=OTHER, database="reimp", **FULL)
    check_perf(dalice, diag, instance=OTHER, database="reimp", **FULL)
    # Re-importing the main corpus file itself (the one the fixture wrote) changes nothing either.
    first = sorted(diag.workdir.glob(f"import-001-{MAIN}.jsonl"))
    assert first
    total = call_records(dalice, **FULL)["TotalCount"]
    diag.server.cli("records", "import", "--instance", MAIN, str(first[0]), timeout=60)
    assert call_records(dalice, **FULL)["TotalCount"] == total
    check_page(dalice, diag, page_size=100, **FULL)


def test_reimport_changed_record_replaces_it(dalice, diag, mode):
    old = diag.rec(OTHER, "o-001")
    assert old.database == "reimp"
    before_total = call_records(dalice, instance=OTHER, database="reimp", page_size=100, **FULL)["TotalCount"]
    new = replace(old, status="running" if old.status == "finished" else "finished",
                  duration_ms=old.duration_ms + 777_000, sql=f"SELECT 'changed by {mode}' -- CHANGED_{mode}",
                  session_id=f"con-{mode}", rows=None if old.rows is not None else 5,
                  plan_text=f"Result ({mode})", start_ms=old.start_ms + 1)
    diag.import_records(OTHER, [new])
    body = call_records(dalice, instance=OTHER, database="reimp", keyword=f"CHANGED_{mode}", **FULL)
    assert body["Items"] == [ref_item(new)] and body["TotalCount"] == 1
    after_total = call_records(dalice, instance=OTHER, database="reimp", page_size=100, **FULL)["TotalCount"]
    assert after_total == before_total
    check_all_pages(dalice, diag, instance=OTHER, database="reimp", **FULL)
    info = call_sqlinfo(dalice, "o-001", instance=OTHER, database="reimp")
    assert (info["SQLStmt"], info["Status"], info["SessionID"], info["StartTime"], info["TextPlan"]) == (
        new.sql, new.status, new.session_id, new.start_ms, new.plan_text)
    assert info["Duration"] == new.duration_ms // 1000
    assert info["MaxOutputRows"] == ("" if new.rows is None else str(new.rows))
    # The old text is gone.
    body = call_records(dalice, instance=OTHER, database="reimp", keyword=old.sql, **FULL)
    assert "o-001" not in {i["QueryID"] for i in body["Items"]}
    check_page(dalice, diag, instance=OTHER, database="reimp", keyword=old.sql, **FULL)


def test_reimport_moving_a_record_to_another_database(dalice, diag, mode):
    rec = diag.rec(OTHER, "o-003")
    target = "reimp" if rec.database == "sales" else "sales"
    moved = replace(rec, database=target, sql=rec.sql + f" /* moved {mode} */")
    diag.import_records(OTHER, [moved])
    for db in ("sales", "reimp"):
        check_all_pages(dalice, diag, instance=OTHER, database=db, **FULL)
    call_sqlinfo(dalice, "o-003", instance=OTHER, database=target)


def test_dimensions_follow_replaced_records(dalice, diag, world, mode):
    """A replaced record's old user and database vanish from the dimensions when no record has them."""
    cur = diag.rec(OTHER, "o-solo")
    new = replace(cur, user=f"solo_user_{mode}", database=f"solo_db_{mode}")
    diag.import_records(OTHER, [new])
    dbs, users = ref_dimensions(diag, OTHER)
    assert cur.user not in users and cur.database not in dbs
    body = call_dimensions(dalice, OTHER)
    assert (body.get("Databases"), body.get("UserNames")) == (dbs, users), "stale dimensions after a replace"
    world.expect_error(lambda: call_sqlinfo(dalice, "o-solo", instance=OTHER, database=cur.database),
                       "InvalidQueryId.NotFound", 404)
    assert call_sqlinfo(dalice, "o-solo", instance=OTHER, database=new.database)["User"] == new.user
