//! Query records: upsert, search against the reference semantics, paging, dimensions.

use chrono::{DateTime, Duration, TimeZone, Utc};
use gpdiag_core::{
    OrderField, QueryCondition, QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow,
};
use gpdiag_store::{Page, Store};

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

pub fn record(instance: &str, query_id: &str, at_ms: i64, duration_ms: i64) -> QueryRecord {
    QueryRecord {
        instance: instance.into(),
        query_id: query_id.into(),
        session_id: format!("s-{query_id}"),
        database: "db0".into(),
        user: "u0".into(),
        start_time: base_time() + Duration::milliseconds(at_ms),
        duration_ms,
        status: QueryStatus::Finished,
        error: None,
        sql: format!("select {query_id}"),
        plan_json: None,
        plan_text: None,
        rows: None,
        source: "test".into(),
        ..Default::default()
    }
}

/// SQL texts that stress literal keyword matching.
const TEXTS: &[&str] = &[
    "SELECT * FROM orders WHERE note = 'it''s 100% done'",
    "select a_b from t where c like 'x\\_y'",
    "UPDATE \"Users\" SET name = 'Zoë' WHERE id = 7",
    "select 中文, ñ from 表格 -- 注释",
    "INSERT INTO t VALUES ('a\\b', \"q\")",
    "select 1\nfrom dual\nwhere x = 'multi\nline'",
    "DELETE FROM events WHERE ts < now() - interval '7 days'",
    "SELECT ÖL FROM ÄPFEL",
];

/// A deterministic spread of records over 6 hours, 3 databases, 4 users.
fn corpus(instance: &str) -> Vec<QueryRecord> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..600)
        .map(|i| {
            let at = (next() % (6 * 3_600_000)) as i64;
            // Long-tailed durations with deliberate ties.
            let duration = match next() % 10 {
                0 => (next() % 120_000) as i64,
                1..=3 => 200,
                _ => (next() % 300) as i64,
            };
            let mut r = record(instance, &format!("q{i:04}"), at, duration);
            r.database = format!("db{}", next() % 3);
            r.user = format!("user{}", next() % 4);
            r.sql = format!(
                "{} /* {i} */",
                TEXTS[(next() % TEXTS.len() as u64) as usize]
            );
            if next() % 5 == 0 {
                r.status = QueryStatus::Running;
            }
            if next() % 11 == 0 {
                r.error = Some("division by zero".into());
            }
            r
        })
        .collect()
}

/// What a store must answer, computed without SQL.
fn reference(
    all: &[QueryRecord],
    filter: &RecordFilter,
    order: RecordOrder,
    page: Page,
) -> (u64, Vec<String>) {
    let mut selected: Vec<&QueryRecord> = all.iter().filter(|r| filter.matches(r)).collect();
    if let Some(QueryCondition::MaxCost(n)) = filter.condition {
        selected.sort_by(|a, b| {
            b.duration_ms
                .cmp(&a.duration_ms)
                .then(a.query_id.cmp(&b.query_id))
        });
        selected.truncate(n as usize);
    }
    selected.sort_by(|a, b| {
        let primary = match order.field {
            OrderField::StartTime => a.start_time.cmp(&b.start_time),
            OrderField::Duration => a.duration_ms.cmp(&b.duration_ms),
        };
        let ordering = primary.then(a.query_id.cmp(&b.query_id));
        if order.descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    let total = selected.len() as u64;
    let ids = selected
        .into_iter()
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .map(|r| r.query_id.clone())
        .collect();
    (total, ids)
}

pub async fn upsert_replaces_by_instance_and_query_id(store: &dyn Store) {
    let first = record("gp-up", "q1", 0, 10);
    assert_eq!(
        store
            .upsert_records(vec![first.clone(), record("gp-up", "q2", 5, 20)])
            .await
            .unwrap(),
        2
    );
    let mut finished = first.clone();
    finished.status = QueryStatus::Running;
    finished.duration_ms = 99;
    finished.plan_json = Some(r#"{"Plan":{}}"#.into());
    finished.plan_text = Some("Seq Scan".into());
    finished.rows = Some(3);
    finished.error = Some("boom".into());
    store.upsert_records(vec![finished.clone()]).await.unwrap();
    assert_eq!(
        store.get_record("gp-up", "q1").await.unwrap(),
        Some(finished)
    );
    assert_eq!(store.get_record("gp-up", "missing").await.unwrap(), None);
    assert_eq!(store.get_record("gp-other", "q1").await.unwrap(), None);
    // The same query ID on another instance is another record.
    store
        .upsert_records(vec![record("gp-up2", "q1", 0, 1)])
        .await
        .unwrap();
    let all = RecordFilter {
        instance: "gp-up".into(),
        database: Some("db0".into()),
        window: TimeWindow::new(base_time(), base_time() + Duration::hours(1)).unwrap(),
        user: None,
        keyword: None,
        condition: None,
    };
    let page = store
        .search_records(
            &all,
            RecordOrder::default(),
            Page {
                offset: 0,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    // Millisecond precision survives.
    let ms = record("gp-up", "q3", 1_234, 1);
    store.upsert_records(vec![ms.clone()]).await.unwrap();
    assert_eq!(
        store
            .get_record("gp-up", "q3")
            .await
            .unwrap()
            .unwrap()
            .start_time,
        ms.start_time
    );
}

pub async fn long_sql_is_stored_whole(store: &dyn Store) {
    let mut r = record("gp-long", "big", 0, 1);
    r.sql = format!("select '{}'", "x\u{00e9}\n".repeat(60_000));
    store.upsert_records(vec![r.clone()]).await.unwrap();
    assert_eq!(
        store
            .get_record("gp-long", "big")
            .await
            .unwrap()
            .unwrap()
            .sql,
        r.sql
    );
}

pub async fn searches_match_the_reference_semantics(store: &dyn Store) {
    let all = corpus("gp-search");
    for chunk in all.chunks(128) {
        store.upsert_records(chunk.to_vec()).await.unwrap();
    }
    let window = |from_h: i64, to_h: i64| {
        TimeWindow::new(
            base_time() + Duration::hours(from_h),
            base_time() + Duration::hours(to_h),
        )
        .unwrap()
    };
    let conditions = [
        None,
        Some(QueryCondition::MaxCost(25)),
        Some(QueryCondition::MaxCost(10_000)),
        Some(QueryCondition::Status(QueryStatus::Running)),
        Some(QueryCondition::Status(QueryStatus::Finished)),
        Some(QueryCondition::Cost {
            min: Some(200),
            max: None,
        }),
        Some(QueryCondition::Cost {
            min: None,
            max: Some(200),
        }),
        Some(QueryCondition::Cost {
            min: Some(30),
            max: Some(60_000),
        }),
        Some(QueryCondition::Cost {
            min: Some(200),
            max: Some(200),
        }),
    ];
    let keywords = [
        None,
        Some("select"),
        Some("100%"),
        Some("%"),
        Some("_"),
        Some("a_b"),
        Some("\\"),
        Some("'"),
        Some("\""),
        Some("zoë"),
        Some("ZOË"),
        Some("中文"),
        Some("öl"),
        Some("it''s"),
        Some("x%y"),
    ];
    let orders = [
        RecordOrder::default(),
        RecordOrder {
            field: OrderField::StartTime,
            descending: false,
        },
        RecordOrder {
            field: OrderField::Duration,
            descending: true,
        },
        RecordOrder {
            field: OrderField::Duration,
            descending: false,
        },
    ];
    let mut checked = 0;
    for database in ["db0", "db1", "nope", "*"] {
        for (w, user) in [
            (window(0, 6), None),
            (window(1, 3), Some("user1")),
            (window(2, 4), None),
        ] {
            for condition in conditions {
                for keyword in keywords {
                    let filter = RecordFilter {
                        instance: "gp-search".into(),
                        database: (database != "*").then(|| database.into()),
                        window: w,
                        user: user.map(str::to_owned),
                        keyword: keyword.map(str::to_owned),
                        condition,
                    };
                    let order = orders[checked % orders.len()];
                    let page = Page {
                        offset: (checked % 3) as u64 * 7,
                        limit: 30,
                    };
                    let got = store.search_records(&filter, order, page).await.unwrap();
                    let (total, ids) = reference(&all, &filter, order, page);
                    let got_ids: Vec<_> = got.records.iter().map(|r| r.query_id.clone()).collect();
                    assert_eq!(
                        (got.total, got_ids),
                        (total, ids),
                        "{filter:?} {order:?} {page:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    // The corpus must actually exercise the filters: some keyword matches of each kind.
    let matching = |k: &str| {
        all.iter()
            .filter(|r| gpdiag_core::record::contains_case_insensitive(&r.sql, k))
            .count()
    };
    for k in ["100%", "a_b", "\\", "zoë", "中文", "öl"] {
        assert!(matching(k) > 0, "the corpus never contains {k:?}");
    }
    assert!(matching("x%y") == 0 && matching("%") > 0);
}

pub async fn paging_edges(store: &dyn Store) {
    let records: Vec<_> = (0..65)
        .map(|i| record("gp-page", &format!("p{i:03}"), i * 1000, i))
        .collect();
    store.upsert_records(records).await.unwrap();
    let filter = RecordFilter {
        instance: "gp-page".into(),
        database: Some("db0".into()),
        window: TimeWindow::new(base_time(), base_time() + Duration::hours(1)).unwrap(),
        user: None,
        keyword: None,
        condition: None,
    };
    let order = RecordOrder {
        field: OrderField::StartTime,
        descending: false,
    };
    let last = store
        .search_records(
            &filter,
            order,
            Page {
                offset: 60,
                limit: 30,
            },
        )
        .await
        .unwrap();
    assert_eq!(last.total, 65);
    assert_eq!(
        last.records
            .iter()
            .map(|r| r.query_id.as_str())
            .collect::<Vec<_>>(),
        ["p060", "p061", "p062", "p063", "p064"]
    );
    let past = store
        .search_records(
            &filter,
            order,
            Page {
                offset: 90,
                limit: 30,
            },
        )
        .await
        .unwrap();
    assert_eq!((past.total, past.records.len()), (65, 0));
    let empty = RecordFilter {
        database: Some("none".into()),
        ..filter.clone()
    };
    let none = store
        .search_records(
            &empty,
            order,
            Page {
                offset: 0,
                limit: 30,
            },
        )
        .await
        .unwrap();
    assert_eq!((none.total, none.records.len()), (0, 0));
    let huge = store
        .search_records(
            &filter,
            order,
            Page {
                offset: u64::MAX,
                limit: u64::MAX,
            },
        )
        .await
        .unwrap();
    assert_eq!(huge.records.len(), 0);
}

pub async fn dimensions_all_time_and_windowed(store: &dyn Store) {
    let mut a = record("gp-dim", "d1", 0, 1);
    a.database = "sales".into();
    a.user = "ann".into();
    let mut b = record("gp-dim", "d2", 7_200_000, 1);
    b.database = "hr".into();
    b.user = "bo".into();
    let mut other = record("gp-dim-other", "d3", 0, 1);
    other.database = "secret".into();
    store.upsert_records(vec![a, b, other]).await.unwrap();
    let all = store.record_dimensions("gp-dim", None).await.unwrap();
    assert_eq!(all.databases, ["hr", "sales"]);
    assert_eq!(all.users, ["ann", "bo"]);
    let first_hour = TimeWindow::new(base_time(), base_time() + Duration::hours(1)).unwrap();
    let windowed = store
        .record_dimensions("gp-dim", Some(first_hour))
        .await
        .unwrap();
    assert_eq!(windowed.databases, ["sales"]);
    assert_eq!(windowed.users, ["ann"]);
    // Replacing the only record with a value removes the value.
    let mut moved = record("gp-dim", "d1", 0, 1);
    moved.database = "hr".into();
    moved.user = "bo".into();
    store.upsert_records(vec![moved]).await.unwrap();
    let after = store.record_dimensions("gp-dim", None).await.unwrap();
    assert_eq!(
        (after.databases, after.users),
        (vec!["hr".to_owned()], vec!["bo".to_owned()])
    );
    let windowed = store
        .record_dimensions("gp-dim", Some(first_hour))
        .await
        .unwrap();
    assert_eq!(windowed.databases, ["hr"]);
    let nothing = store.record_dimensions("gp-none", None).await.unwrap();
    assert!(nothing.databases.is_empty() && nothing.users.is_empty());
}
