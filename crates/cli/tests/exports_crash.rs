//! A server killed with SIGKILL in the middle of exports (SQLite and `file://`): after a restart
//! on the same data directory every export ends, finished ones are whole, and nothing partial
//! can be reached, through a link or otherwise.

mod support;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

/// 20 exports of 200,000 records each, as the issue asks.
const RECORDS: u64 = 200_000;
const TASKS: usize = 20;

/// A staging file of the local object store: `<key>#<digits>`.
fn is_staging(path: &str) -> bool {
    path.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The task ID in `exports/<account>/<instance>/<id>/...`.
fn task_of(path: &str) -> i64 {
    path.split('/').nth(3).unwrap().parse().unwrap()
}

/// A download link signed with the server's own link key (read from its store), exactly as
/// the server signs: what a holder of a leaked key, or a bug that signs the wrong name, gets.
fn signed_link(server: &Server, key: &str, task: i64, file_name: &str) -> String {
    let expires = chrono::Utc::now().timestamp() + 600;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{task}\n{file_name}\n{expires}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    server.url(&format!(
        "/downloads/{task}/{}?Expires={expires}&Signature={signature}",
        file_name.replace('#', "%23")
    ))
}

fn store_of(rt: &tokio::runtime::Runtime, url: &str) -> std::sync::Arc<dyn gpdiag_store::Store> {
    rt.block_on(gpdiag_store::open(url)).unwrap()
}

#[test]
fn a_killed_server_resumes_every_export_and_exposes_nothing_partial() {
    let _serial = one_at_a_time();
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let storage = format!("sqlite://{}", data.join("gpdiag.db").display());
    let objects = data.join("objects");
    let config = data.join("gpdiag.toml");
    std::fs::write(
        &config,
        config_toml(
            &storage,
            &format!("url = \"file://{}\"", objects.display()),
            &format!("max_running_per_account = {TASKS}"),
        ),
    )
    .unwrap();

    let mut server = Server::start(&config, &data.join("serve-1.log"));
    let t = Instant::now();
    import_records(&storage, 0..RECORDS, DATABASE, 0);
    eprintln!("imported {RECORDS} records in {:?}", t.elapsed());

    let t = Instant::now();
    let ids: Vec<i64> = (0..TASKS).map(|_| server.start_export(DATABASE)).collect();
    // Kill while a file is being written: a staging file with at least one part in it.
    let partial = wait_for(
        "an export to write its first part",
        Duration::from_secs(300),
        Duration::from_millis(20),
        || {
            let files = files_under(&objects);
            let partial: Vec<String> = files
                .iter()
                .filter(|(path, size)| is_staging(path) && **size > 0)
                .map(|(path, _)| path.clone())
                .collect();
            (!partial.is_empty()).then_some(partial)
        },
    );
    server.kill9();
    let at_kill = files_under(&objects);
    let finished_before_kill = at_kill.keys().filter(|p| !is_staging(p)).count();
    eprintln!(
        "killed {:?} after the exports were started, with uploads in progress {partial:?} \
         and {finished_before_kill} files finished",
        t.elapsed()
    );
    assert!(!partial.is_empty());

    let t = Instant::now();
    let server = Server::start(&config, &data.join("serve-2.log"));
    let records = server.wait_until_ended(&ids, Duration::from_secs(900));
    eprintln!("every export ended {:?} after the restart", t.elapsed());
    assert!(
        server
            .log_text()
            .contains("resuming exports interrupted by the last stop"),
        "the restart takes the interrupted exports again at once:\n{}",
        server.log_text()
    );

    // Every export ended, and a failed one says why.
    assert_eq!(records.len(), TASKS);
    for (id, r) in &records {
        match r["Status"].as_str().unwrap() {
            "finished" => {
                assert_eq!(r["ExceptionMsg"], "", "{r}");
                assert!(!r["DownloadUrl"].as_str().unwrap().is_empty(), "{r}");
            }
            "failed" => {
                assert!(!r["ExceptionMsg"].as_str().unwrap().is_empty(), "{id}: {r}");
                assert_eq!(r["DownloadUrl"], "", "{r}");
            }
            other => panic!("download {id} is {other}: {r}"),
        }
    }

    // Every finished file is whole: all the records, each once, as many rows and bytes as the
    // task recorded.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = store_of(&rt, &storage);
    let t = Instant::now();
    let mut recorded_objects = BTreeSet::new();
    let mut attempts = BTreeMap::new();
    for (id, r) in &records {
        let task = rt.block_on(store.get_task(*id)).unwrap().unwrap();
        *attempts.entry(task.attempts).or_insert(0) += 1;
        if r["Status"] != "finished" {
            continue;
        }
        let response = server.fetch(r["DownloadUrl"].as_str().unwrap());
        assert_eq!(response.status(), 200, "download {id}");
        let bytes = response.bytes().unwrap();
        assert_eq!(check_export(&bytes, 0..RECORDS), RECORDS, "download {id}");
        assert_eq!(task.rows, Some(RECORDS), "download {id}: rows recorded");
        assert_eq!(task.bytes, Some(bytes.len() as u64), "download {id}");
        recorded_objects.insert(task.object_key.clone().unwrap());
    }
    eprintln!(
        "checked {} files in {:?}; tasks by attempts: {attempts:?}",
        recorded_objects.len(),
        t.elapsed()
    );

    // On disk, the only complete-looking files are the finished tasks' recorded objects.
    let on_disk = files_under(&objects);
    let visible: BTreeSet<String> = on_disk.keys().filter(|p| !is_staging(p)).cloned().collect();
    assert_eq!(
        visible, recorded_objects,
        "files on disk other than staging files"
    );
    let staging: Vec<&String> = on_disk.keys().filter(|p| is_staging(p)).collect();
    eprintln!("staging files left on disk by the kill: {staging:?}");
    for path in &staging {
        // Only interrupted attempts leave one: `.../<id>/<attempt>/<name>#<n>`, where the task
        // was taken again after that attempt.
        let task = rt
            .block_on(store.get_task(task_of(path)))
            .unwrap()
            .unwrap_or_else(|| panic!("{path} belongs to no task"));
        let attempt: u32 = path.split('/').nth(4).unwrap().parse().unwrap();
        assert!(
            ids.contains(&task.id) && attempt < task.attempts,
            "{path} is a leftover of an interrupted attempt ({task:?})"
        );
    }

    // Nothing partial can be reached through the download route, not even with a link signed
    // by the server's own key: the route serves a task's recorded object, never a path.
    let link_key = rt
        .block_on(store.get_or_create_setting("download_link_key", "unused"))
        .unwrap();
    assert_ne!(link_key, "unused");
    let unknown = ids.iter().max().unwrap() + 1000;
    let refused = |url: &str| {
        let response = server.fetch(url);
        let status = response.status().as_u16();
        let body = response.bytes().unwrap();
        assert!(
            matches!(status, 403 | 404),
            "{url} answered {status} with {} bytes",
            body.len()
        );
        let text = String::from_utf8_lossy(&body);
        assert!(
            body.len() < 1000 && !text.contains("Query ID") && !text.contains("SQLite"),
            "{url} served {text:?}"
        );
    };
    for path in &staging {
        let task = task_of(path);
        let name = Path::new(path.as_str())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // A forged signature, then a genuine one for the staging file's name.
        refused(&server.url(&format!(
            "/downloads/{task}/{}?Expires=9999999999&Signature={}",
            name.replace('#', "%23"),
            "0".repeat(64)
        )));
        refused(&signed_link(&server, &link_key, task, &name));
        // The attempt's path, and the plain name under the staging file's attempt.
        let attempt_path = path.split('/').skip(4).collect::<Vec<_>>().join("/");
        refused(&signed_link(&server, &link_key, task, &attempt_path));
    }
    // A genuine link carried over to another task ID, or to another name.
    let (first, record) = records
        .iter()
        .find(|(_, r)| r["Status"] == "finished")
        .expect("at least one export finished");
    let url = record["DownloadUrl"].as_str().unwrap();
    refused(&url.replace(
        &format!("/downloads/{first}/"),
        &format!("/downloads/{unknown}/"),
    ));
    refused(&url.replace(FILE_NAME, &format!("{FILE_NAME}%231")));
    refused(&url.replace(FILE_NAME, "..%2F..%2Fgpdiag.db"));
    refused(&signed_link(&server, &link_key, unknown, FILE_NAME));
    refused(&signed_link(
        &server,
        &link_key,
        *first,
        "../../../gpdiag.db",
    ));

    // A task that never finished: canceled at once. Even a genuine link to it is refused,
    // and its worker leaves no file behind.
    let canceled = server.start_export(DATABASE);
    let (status, body) = server.call(
        "CancelDownloadTask",
        &[
            ("DBInstanceId", INSTANCE),
            ("DownloadId", &canceled.to_string()),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let r = &server.downloads()[&canceled];
    assert_eq!(r["Status"], "failed", "{r}");
    assert_eq!(r["ExceptionMsg"], "canceled", "{r}");
    assert_eq!(r["DownloadUrl"], "", "{r}");
    refused(&signed_link(&server, &link_key, canceled, FILE_NAME));
    refused(&server.url(&format!(
        "/downloads/{canceled}/{FILE_NAME}?Expires=9999999999&Signature={}",
        "0".repeat(64)
    )));
    let prefix = format!("exports/{ACCOUNT}/{INSTANCE}/{canceled}/");
    wait_for(
        "the canceled export's worker to drop its upload",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let left: Vec<String> = files_under(&objects)
                .into_keys()
                .filter(|p| p.starts_with(&prefix))
                .collect();
            left.is_empty().then_some(())
        },
    );
    refused(&signed_link(&server, &link_key, canceled, FILE_NAME));

    drop(server);
    eprintln!("total {:?}", began.elapsed());
}

/// What a kill leaves behind (the local store's staging files of the interrupted attempts)
/// lives under the task's prefix, and retention deletes the prefix with the task: the data
/// directory does not keep the leftovers forever.
#[test]
fn retention_deletes_what_a_killed_export_left_behind() {
    let _serial = one_at_a_time();
    const RECORDS: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let storage = format!("sqlite://{}", data.join("gpdiag.db").display());
    let objects = data.join("objects");
    let config = data.join("gpdiag.toml");
    let write_config = |exports: &str| {
        let objects = format!("url = \"file://{}\"", objects.display());
        std::fs::write(&config, config_toml(&storage, &objects, exports)).unwrap();
    };
    write_config("");
    let mut server = Server::start(&config, &data.join("serve-1.log"));
    import_records(&storage, 0..RECORDS, DATABASE, 200);
    let ids = [server.start_export(DATABASE), server.start_export(DATABASE)];
    wait_for(
        "an export to write its first part",
        Duration::from_secs(300),
        Duration::from_millis(20),
        || {
            files_under(&objects)
                .iter()
                .any(|(path, size)| is_staging(path) && *size > 0)
                .then_some(())
        },
    );
    server.kill9();

    let mut server = Server::start(&config, &data.join("serve-2.log"));
    let records = server.wait_until_ended(&ids, Duration::from_secs(300));
    assert!(
        records.values().all(|r| r["Status"] == "finished"),
        "{records:?}"
    );
    let left: Vec<String> = files_under(&objects)
        .into_keys()
        .filter(|p| is_staging(p))
        .collect();
    eprintln!("staging files left by the kill: {left:?}");
    assert!(!left.is_empty(), "the kill interrupted an upload");
    assert!(server.stop().success());

    // Keep nothing: the first retention pass, at start, deletes every ended export.
    write_config("retention_days = 0");
    let server = Server::start(&config, &data.join("serve-3.log"));
    wait_for(
        "retention to delete the exports",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || server.downloads().is_empty().then_some(()),
    );
    // The tasks leave the store before their files are deleted, so a registry refresh can
    // show the list empty a moment before the last prefix is gone.
    wait_for(
        "retention to delete the exports' files",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || files_under(&objects).is_empty().then_some(()),
    );
}

/// SIGTERM in the middle of exports: the server stops gracefully, and the exports in flight
/// are left to the next start (as `run_until_stopped` promises), not failed on the way out.
#[test]
fn a_graceful_stop_leaves_exports_in_flight_to_the_next_start() {
    let _serial = one_at_a_time();
    const RECORDS: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let storage = format!("sqlite://{}", data.join("gpdiag.db").display());
    let objects = data.join("objects");
    let config = data.join("gpdiag.toml");
    let objects_url = format!("url = \"file://{}\"", objects.display());
    std::fs::write(&config, config_toml(&storage, &objects_url, "")).unwrap();
    let mut server = Server::start(&config, &data.join("serve-1.log"));
    import_records(&storage, 0..RECORDS, DATABASE, 200);
    let ids = [server.start_export(DATABASE), server.start_export(DATABASE)];
    wait_for(
        "an export to write its first part",
        Duration::from_secs(300),
        Duration::from_millis(20),
        || {
            files_under(&objects)
                .iter()
                .any(|(path, size)| is_staging(path) && *size > 0)
                .then_some(())
        },
    );
    let status = server.stop();
    assert!(status.success(), "{status}");
    let stopping_log = server.log_text();

    let server = Server::start(&config, &data.join("serve-2.log"));
    let records = server.wait_until_ended(&ids, Duration::from_secs(300));
    for (id, r) in &records {
        assert_eq!(
            r["Status"], "finished",
            "download {id}: {r}; the stopping server logged:\n{stopping_log}"
        );
        let response = server.fetch(r["DownloadUrl"].as_str().unwrap());
        assert_eq!(response.status(), 200);
        check_export(&response.bytes().unwrap(), 0..RECORDS);
    }
}
