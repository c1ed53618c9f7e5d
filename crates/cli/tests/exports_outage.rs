//! The object store (S3, a private Garage) goes away while an export is uploading: the export
//! fails with a message that names the object store, the server keeps serving, nothing partial
//! is visible once the store is back, the abandoned uploads are aborted then, and exports work
//! again.
//!
//! This test stops and restarts its S3 server, so it always starts its own Garage with
//! scripts/s3-server (never the shared one of GPDIAG_TEST_S3_*). Never skipped.

mod support;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use std::time::{Duration, Instant};
use support::*;

/// Big enough that the export takes several seconds: about 170 MB of CSV.
const RECORDS: u64 = 600_000;
const PADDING: usize = 200;
/// A second, small database for the exports during and after the outage: records
/// `RECORDS..SMALL_END`.
const SMALL: &str = "small";
const SMALL_END: u64 = RECORDS + 100;

const UNREACHABLE: &str = "The object store could not be reached while the file was being \
                           uploaded, so no file was saved.";

/// Every key in the bucket under `prefix`, as the S3 API lists them.
fn list_bucket(rt: &tokio::runtime::Runtime, garage: &Garage, prefix: &str) -> Vec<String> {
    let s3 = AmazonS3Builder::new()
        .with_endpoint(garage.var("GPDIAG_TEST_S3_ENDPOINT"))
        .with_region(garage.var("GPDIAG_TEST_S3_REGION"))
        .with_bucket_name(garage.var("GPDIAG_TEST_S3_BUCKET"))
        .with_access_key_id(garage.var("GPDIAG_TEST_S3_ACCESS_KEY_ID"))
        .with_secret_access_key(garage.var("GPDIAG_TEST_S3_SECRET_ACCESS_KEY"))
        .with_allow_http(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut listing = s3.list(Some(&ObjectPath::from(prefix)));
        let mut keys = Vec::new();
        while let Some(meta) = listing.next().await {
            keys.push(meta.unwrap().location.to_string());
        }
        keys.sort();
        keys
    })
}

#[test]
fn an_object_store_outage_fails_the_export_clearly_and_the_server_keeps_serving() {
    let began = Instant::now();
    let garage = Garage::start();
    eprintln!("Garage ready in {:?}", began.elapsed());
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite://{}", dir.path().join("gpdiag.db").display());
    let prefix = format!("run-{}", uuid::Uuid::new_v4().simple());
    let config = dir.path().join("gpdiag.toml");
    std::fs::write(
        &config,
        config_toml(
            &storage,
            &format!(
                "url = \"s3://{bucket}/{prefix}\"\n\
                 s3_endpoint = \"{endpoint}\"\n\
                 s3_region = \"{region}\"\n\
                 s3_access_key_id = \"{id}\"\n\
                 s3_secret_access_key = \"{secret}\"\n\
                 s3_path_style = true\n",
                bucket = garage.var("GPDIAG_TEST_S3_BUCKET"),
                endpoint = garage.var("GPDIAG_TEST_S3_ENDPOINT"),
                region = garage.var("GPDIAG_TEST_S3_REGION"),
                id = garage.var("GPDIAG_TEST_S3_ACCESS_KEY_ID"),
                secret = garage.var("GPDIAG_TEST_S3_SECRET_ACCESS_KEY"),
            ),
            "",
        ),
    )
    .unwrap();
    let mut server = Server::start(&config, &dir.path().join("serve.log"));
    assert!(
        !server.log_text().contains("not reachable"),
        "{}",
        server.log_text()
    );
    let t = Instant::now();
    import_records(&storage, 0..RECORDS, DATABASE, PADDING);
    import_records(&storage, RECORDS..SMALL_END, SMALL, 0);
    eprintln!("imported {RECORDS} records in {:?}", t.elapsed());

    // Stop Garage once the export has uploaded a part and is still running.
    let before = garage.data_bytes();
    let t = Instant::now();
    let id = server.start_export(DATABASE);
    wait_for(
        "the export to upload its first part",
        Duration::from_secs(300),
        Duration::from_millis(20),
        || {
            let log = server.log_text();
            assert!(
                !log.contains("export finished") && !log.contains("export failed"),
                "the export ended before it could be interrupted: make it bigger"
            );
            (garage.data_bytes() >= before + 2 * 1024 * 1024).then_some(())
        },
    );
    let uploading = t.elapsed();
    let r = &server.downloads()[&id];
    assert_eq!(
        r["Status"], "running",
        "the export must still be uploading when the store goes away: {r}"
    );
    let t = Instant::now();
    garage.stop();
    eprintln!(
        "stopped Garage {uploading:?} into the export ({} bytes stored); stopping took {:?}",
        garage.data_bytes() - before,
        t.elapsed()
    );
    let t = Instant::now();
    let r = server.wait_until_ended(&[id], Duration::from_secs(300))[&id].clone();
    eprintln!(
        "the export was listed as ended {:?} after Garage had stopped: {r}",
        t.elapsed()
    );
    assert_eq!(r["Status"], "failed", "{r}");
    assert_eq!(r["ExceptionMsg"], UNREACHABLE, "{r}");
    assert_eq!(r["DownloadUrl"], "", "{r}");

    // The server keeps serving, and an export started during the outage fails the same way.
    assert_eq!(server.get("/healthz").text().unwrap(), "ok\n");
    let (status, body) = server.call("DescribeDBInstances", &[("RegionId", "cn-hangzhou")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["TotalRecordCount"], 1, "{body}");
    let (status, body) = server.call(
        "DescribeDiagnosisRecords",
        &[
            ("DBInstanceId", INSTANCE),
            ("Database", SMALL),
            ("StartTime", START_TIME),
            ("EndTime", END_TIME),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["TotalCount"], SMALL_END - RECORDS, "{body}");
    let during = server.start_export(SMALL);
    let r = server.wait_until_ended(&[during], Duration::from_secs(300))[&during].clone();
    assert_eq!(r["Status"], "failed", "{r}");
    assert!(
        r["ExceptionMsg"].as_str().unwrap().contains("object store"),
        "{r}"
    );

    // Garage back: nothing of the failed exports is visible, and exports work again.
    garage.restart();
    // The aborts the server sent while the store was down are retried: the failed uploads'
    // parts are removed once it is back, not left to a lifecycle rule.
    eprintln!(
        "unfinished uploads when Garage came back: {}",
        garage.unfinished_uploads()
    );
    let t = Instant::now();
    wait_for(
        "the failed exports' uploads to be aborted",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || (garage.unfinished_uploads() == 0).then_some(()),
    );
    eprintln!("their aborts went through {:?} later", t.elapsed());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let left = list_bucket(&rt, &garage, &prefix);
    assert!(
        left.is_empty(),
        "the failed exports left objects behind: {left:?}"
    );
    let after = server.start_export(SMALL);
    let r = server.wait_until_ended(&[after], Duration::from_secs(300))[&after].clone();
    assert_eq!(r["Status"], "finished", "{r}");
    let url = r["DownloadUrl"].as_str().unwrap();
    assert!(
        url.starts_with(garage.var("GPDIAG_TEST_S3_ENDPOINT")),
        "{url}"
    );
    let response = server.fetch(url);
    assert_eq!(response.status(), 200, "{url}");
    check_export(&response.bytes().unwrap(), RECORDS..SMALL_END);
    assert_eq!(
        list_bucket(&rt, &garage, &prefix),
        vec![format!(
            "{prefix}/exports/{ACCOUNT}/{INSTANCE}/{after}/1/{FILE_NAME}"
        )],
        "only the finished export's file is in the bucket"
    );

    let status = server.stop();
    assert!(status.success(), "{status}");
    eprintln!("total {:?}", began.elapsed());
}
