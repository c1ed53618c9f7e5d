"""Instance listing / attribute / download-record actions, driven through the official SDK.

Every test runs in both signing modes (fixture `mode`: acs3, v2).
"""
from __future__ import annotations

import re

import pytest

from alibabacloud_gpdb20160503 import models as gpdb

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def list_instances(client, **kw):
    kw.setdefault("region_id", "cn-hangzhou")
    resp = client.describe_dbinstances(gpdb.DescribeDBInstancesRequest(**kw))
    assert resp.status_code == 200
    return resp.body.to_map()


def ids_of(body):
    items = body.get("Items")
    assert isinstance(items, dict), f"Items must be an object wrapping DBInstance[]: {body}"
    lst = items.get("DBInstance")
    assert isinstance(lst, list), f"Items.DBInstance must be a list: {body}"
    return [i["DBInstanceId"] for i in lst]


# ------------------------------------------------------------------------------------------------
# DescribeDBInstances
# ------------------------------------------------------------------------------------------------

def test_describe_instances_alice_sees_exactly_hers(alice, world):
    body = list_instances(alice, page_size=100)
    got = ids_of(body)
    want = {i["id"] for i in world.instances_of("alice")}
    assert len(got) == len(set(got)), f"duplicates in listing: {got}"
    assert set(got) == want
    assert not any(i.startswith("gp-bob") for i in got)
    assert body["TotalRecordCount"] == len(want)
    assert body["PageRecordCount"] == len(want)
    assert body["PageNumber"] == 1
    assert isinstance(body.get("RequestId"), str) and body["RequestId"]
    assert "Code" not in body, "a success body must not carry a Code field"


def test_describe_instances_fields(alice, world):
    body = list_instances(alice, page_size=100)
    for item in body["Items"]["DBInstance"]:
        want = world.INSTANCES_BY_ID[item["DBInstanceId"]]
        assert item["DBInstanceMode"] == want["mode"], item
        assert item["DBInstanceStatus"] == want["status"], item
        assert item["Engine"] == "gpdb", item
        assert item["EngineVersion"] == want["engine_version"], item
        assert item["RegionId"] == want["region"], item
        assert item["DBInstanceDescription"] == want["description"], item
        assert isinstance(item.get("CreateTime"), str) and ISO_UTC.match(item["CreateTime"]), (
            f"CreateTime must be ISO-8601 UTC like 2022-08-11T09:16:26Z: {item}")


def test_describe_instances_bob_sees_only_his(bob, world):
    body = list_instances(bob)
    assert set(ids_of(body)) == {i["id"] for i in world.instances_of("bob")}
    assert body["TotalRecordCount"] == len(world.instances_of("bob"))


def test_describe_instances_account_with_env_secret(server, mode):
    """carol's secret is configured as "env:VAR"; she owns no instances."""
    carol = server.client(mode, "carol")
    body = list_instances(carol)
    assert ids_of(body) == []
    assert body["TotalRecordCount"] == 0
    assert body["PageRecordCount"] == 0


def test_describe_instances_default_paging(alice, world):
    total = len(world.instances_of("alice"))
    assert total > 30, "test data must span more than one default page"
    body = list_instances(alice)
    assert len(ids_of(body)) == 30
    assert body["PageRecordCount"] == 30
    assert body["PageNumber"] == 1
    assert body["TotalRecordCount"] == total


def test_describe_instances_paging_size_30(alice, world):
    total = len(world.instances_of("alice"))
    p1 = list_instances(alice, page_size=30, page_number=1)
    p2 = list_instances(alice, page_size=30, page_number=2)
    p3 = list_instances(alice, page_size=30, page_number=3)
    ids1, ids2, ids3 = ids_of(p1), ids_of(p2), ids_of(p3)
    assert (len(ids1), len(ids2), len(ids3)) == (30, total - 30, 0)
    assert not set(ids1) & set(ids2), "pages overlap"
    assert set(ids1) | set(ids2) == {i["id"] for i in world.instances_of("alice")}
    for n, p in ((1, p1), (2, p2), (3, p3)):
        assert p["PageNumber"] == n
        assert p["TotalRecordCount"] == total
        assert p["PageRecordCount"] == len(ids_of(p))
        for k in ("PageNumber", "PageRecordCount", "TotalRecordCount"):
            assert type(p[k]) is int, f"{k} must be a JSON number: {p[k]!r}"


@pytest.mark.parametrize("size", [50, 100])
def test_describe_instances_paging_large_pages(alice, world, size):
    total = len(world.instances_of("alice"))
    body = list_instances(alice, page_size=size, page_number=1)
    assert len(ids_of(body)) == min(size, total)
    assert body["PageRecordCount"] == min(size, total)
    assert body["TotalRecordCount"] == total
    body2 = list_instances(alice, page_size=size, page_number=2)
    assert ids_of(body2) == []
    assert body2["PageRecordCount"] == 0
    assert body2["TotalRecordCount"] == total


@pytest.mark.parametrize("size", [7, 10, 1000])
def test_describe_instances_bad_page_size(alice, world, size):
    world.expect_error(lambda: list_instances(alice, page_size=size), "InvalidParameter", 400)


def test_describe_instances_missing_region(alice, world):
    e = world.expect_error(lambda: alice.describe_dbinstances(gpdb.DescribeDBInstancesRequest()),
                           "MissingParameter", 400)
    assert "RegionId" in e.data["Message"], e.data


def test_filter_instance_ids(alice, world):
    body = list_instances(alice, dbinstance_ids="gp-alice-ok,gp-alice-old,gp-bob-ok")
    assert sorted(ids_of(body)) == ["gp-alice-ok", "gp-alice-old"]
    assert body["TotalRecordCount"] == 2
    assert body["PageRecordCount"] == 2


def test_filter_instance_ids_only_foreign(alice, world):
    body = list_instances(alice, dbinstance_ids="gp-bob-ok")
    assert ids_of(body) == []
    assert body["TotalRecordCount"] == 0


@pytest.mark.parametrize("statuses", [["Creating"], ["running"], ["RUNNING", "rebooting"]])
def test_filter_statuses(alice, world, statuses):
    body = list_instances(alice, dbinstance_statuses=statuses, page_size=100)
    wanted = {s.lower() for s in statuses}
    want = {i["id"] for i in world.instances_of("alice") if i["status"].lower() in wanted}
    assert want, "test data must match"
    assert set(ids_of(body)) == want
    assert body["TotalRecordCount"] == len(want)


@pytest.mark.parametrize("modes", [["Classic"], ["storageelastic"], ["SERVERLESS", "classic"]])
def test_filter_modes(alice, world, modes):
    body = list_instances(alice, dbinstance_modes=modes, page_size=100)
    wanted = {m.lower() for m in modes}
    want = {i["id"] for i in world.instances_of("alice") if i["mode"].lower() in wanted}
    assert want
    assert set(ids_of(body)) == want
    assert body["TotalRecordCount"] == len(want)


def test_filters_combined(alice, world):
    body = list_instances(alice, dbinstance_ids="gp-alice-ok,gp-alice-classic,gp-alice-v7,gp-alice-serverless",
                          dbinstance_statuses=["running"], dbinstance_modes=["StorageElastic", "Classic"])
    assert sorted(ids_of(body)) == ["gp-alice-classic", "gp-alice-ok"]
    assert body["TotalRecordCount"] == 2


def test_filter_paging_counts_filtered_total(alice, world):
    running = [i for i in world.instances_of("alice") if i["status"] == "Running"]
    body = list_instances(alice, dbinstance_statuses=["Running"], page_size=30, page_number=1)
    assert body["TotalRecordCount"] == len(running)
    assert body["PageRecordCount"] == min(30, len(running))


# ------------------------------------------------------------------------------------------------
# DescribeDBInstanceAttribute
# ------------------------------------------------------------------------------------------------

def describe_attr(client, instance_id):
    return client.describe_dbinstance_attribute(
        gpdb.DescribeDBInstanceAttributeRequest(dbinstance_id=instance_id))


@pytest.mark.parametrize("iid", ["gp-alice-ok", "gp-alice-old", "gp-alice-classic", "gp-alice-v7"])
def test_attribute(alice, world, iid):
    resp = describe_attr(alice, iid)
    assert resp.status_code == 200
    body = resp.body.to_map()
    items = body.get("Items")
    assert isinstance(items, dict) and isinstance(items.get("DBInstanceAttribute"), list), body
    assert len(items["DBInstanceAttribute"]) == 1, body
    a = items["DBInstanceAttribute"][0]
    want = world.INSTANCES_BY_ID[iid]
    assert a["DBInstanceId"] == iid
    assert a["CoreVersion"] == want["core_version"]
    assert a["DBInstanceMode"] == want["mode"]
    assert a["DBInstanceStatus"] == want["status"]
    assert a["Engine"] == "gpdb"
    assert a["EngineVersion"] == want["engine_version"]
    assert a["RegionId"] == want["region"]
    assert a["DBInstanceDescription"] == want["description"]
    assert isinstance(a.get("CreationTime"), str) and ISO_UTC.match(a["CreationTime"]), a
    assert isinstance(body.get("RequestId"), str) and body["RequestId"]
    # The typed SDK model sees the same thing.
    assert resp.body.items.dbinstance_attribute[0].core_version == want["core_version"]


def test_attribute_bob_sees_his(bob, world):
    a = describe_attr(bob, "gp-bob-ok").body.to_map()["Items"]["DBInstanceAttribute"][0]
    assert a["DBInstanceId"] == "gp-bob-ok"


def _normalised(exc, iid):
    d = dict(exc.data)
    d.pop("RequestId")
    d["Message"] = d["Message"].replace(iid, "<ID>")
    return d


def test_attribute_foreign_instance_is_not_found_like_unknown(alice, world):
    e_foreign = world.expect_error(lambda: describe_attr(alice, "gp-bob-ok"),
                                   "InvalidDBInstanceId.NotFound", 404)
    e_unknown = world.expect_error(lambda: describe_attr(alice, "gp-nobody-0001"),
                                   "InvalidDBInstanceId.NotFound", 404)
    assert type(e_foreign) is type(e_unknown)
    assert _normalised(e_foreign, "gp-bob-ok") == _normalised(e_unknown, "gp-nobody-0001")


def test_attribute_missing_instance_id(alice, world):
    e = world.expect_error(lambda: alice.describe_dbinstance_attribute(gpdb.DescribeDBInstanceAttributeRequest()),
                           "MissingParameter", 400)
    assert "DBInstanceId" in e.data["Message"], e.data


# ------------------------------------------------------------------------------------------------
# DescribeDownloadRecords
# ------------------------------------------------------------------------------------------------

def download_records(client, instance_id=None, task_type=None):
    return client.describe_download_records(
        gpdb.DescribeDownloadRecordsRequest(dbinstance_id=instance_id, download_task_type=task_type))


@pytest.mark.parametrize("task_type", [None, "SQL_DIAGNOSE", "SLOW_SQL"])
@pytest.mark.parametrize("iid", ["gp-alice-ok", "gp-alice-ok2", "gp-alice-v7"])
def test_download_records_empty(alice, iid, task_type):
    resp = download_records(alice, iid, task_type)
    assert resp.status_code == 200
    body = resp.body.to_map()
    assert body.get("Records") == [], f"Records must be present and empty: {body}"
    assert isinstance(body.get("RequestId"), str) and body["RequestId"]
    assert "Code" not in body


def test_download_records_bogus_type(alice, world):
    world.expect_error(lambda: download_records(alice, "gp-alice-ok", "BOGUS"), "InvalidParameter", 400)


def test_download_records_missing_instance(alice, world):
    e = world.expect_error(lambda: download_records(alice, None, "SQL_DIAGNOSE"), "MissingParameter", 400)
    assert "DBInstanceId" in e.data["Message"], e.data
    world.expect_error(lambda: download_records(alice), "MissingParameter", 400)


def test_download_records_foreign_instance(alice, world):
    e_foreign = world.expect_error(lambda: download_records(alice, "gp-bob-ok"),
                                   "InvalidDBInstanceId.NotFound", 404)
    e_unknown = world.expect_error(lambda: download_records(alice, "gp-nobody-0001"),
                                   "InvalidDBInstanceId.NotFound", 404)
    assert _normalised(e_foreign, "gp-bob-ok") == _normalised(e_unknown, "gp-nobody-0001")


def test_download_records_bob_own_instance(bob):
    assert download_records(bob, "gp-bob-ok").body.to_map().get("Records") == []


@pytest.mark.parametrize("iid", ["gp-alice-old", "gp-alice-old2"])
def test_download_records_old_core_version(alice, world, iid):
    world.expect_error(lambda: download_records(alice, iid), "IncorrectModuleVersion", 400)


@pytest.mark.parametrize("iid", ["gp-alice-classic", "gp-alice-serverless"])
def test_download_records_not_storage_elastic(alice, world, iid):
    world.expect_error(lambda: download_records(alice, iid), "IncorrectDBInstanceState", 400)
