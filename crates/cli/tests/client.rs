//! The client commands of the real `gpdiag` binary against a real `gpdiag serve` on a free
//! port: every subcommand, errors with the server's Code and Message and the documented exit
//! codes, `export --wait` producing exactly the bytes of the DownloadUrl, progress that never
//! reaches standard output, and RowsDone as the running export's progress.

mod support;

#[path = "support/cli.rs"]
mod cli;

use cli::{export_args, window_args, Cli, ClientEnv};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use support::*;

/// Records in every test server: three pages of DescribeDiagnosisRecords at 100 a page.
const RECORDS: u64 = 250;

/// One server with RECORDS records of DATABASE, and a client for it.
fn start() -> ClientEnv {
    ClientEnv::start(RECORDS, "", "")
}

fn search_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    window_args(&["records", "search"], extra)
}

/// The DownloadId an `export` without --wait printed: its whole standard output.
fn printed_id(run: &cli::Run) -> i64 {
    let text = run.stdout_text();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an ID: {text:?}"))
}

#[test]
fn instances_list_and_show() {
    let env = start();
    let run = env.cli.run(&["instances", "list"]);
    let text = run.ok().stdout_text();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("ID "), "{text}");
    let row = lines.next().expect("one instance");
    assert!(
        row.starts_with(INSTANCE) && row.contains("StorageElastic"),
        "{text}"
    );
    assert_eq!(lines.next(), None, "{text}");

    let list = env.cli.run(&["instances", "list", "--output", "json"]);
    let list = list.ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["DBInstanceId"], INSTANCE);

    // Another region has none of them: an empty table and a note on stderr.
    let run = env
        .cli
        .run(&["instances", "list", "--region", "cn-beijing"]);
    assert_eq!(run.ok().stdout_text().lines().count(), 1);
    assert!(
        run.stderr.contains("no instances in region cn-beijing"),
        "{}",
        run.stderr
    );

    let show = env.cli.run(&["instances", "show", INSTANCE]);
    let text = show.ok().stdout_text();
    assert!(
        text.contains("CoreVersion") && text.contains("6.3.10.1"),
        "{text}"
    );
    let show = env
        .cli
        .run(&["instances", "show", INSTANCE, "--output", "json"]);
    assert_eq!(show.ok().json()["DBInstanceMode"], "StorageElastic");

    env.cli
        .run(&["instances", "show", "gp-nonexistent"])
        .fails(5, &["InvalidDBInstanceId.NotFound", "request ID:"]);
}

#[test]
fn records_search_pages_filters_and_formats() {
    let env = start();
    // JSON: every record once, across three pages.
    let all = env.cli.run(&search_args(&["--output", "json"]));
    let all = all.ok().json();
    let ids: BTreeSet<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["QueryID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len() as u64, RECORDS, "every record exactly once");
    assert_eq!(
        ids,
        (0..RECORDS).map(|i| format!("q{i:08}")).collect(),
        "the records imported"
    );
    // Newest first, as the API lists them.
    let starts: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["StartTime"].as_i64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]));

    // CSV: a header and one row per record, SQL intact.
    let csv = env
        .cli
        .run(&search_args(&["--output", "csv", "--limit", "120"]));
    let mut reader = csv::Reader::from_reader(&csv.ok().stdout[..]);
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "QueryID",
            "SessionID",
            "Database",
            "User",
            "Status",
            "StartTime",
            "Duration",
            "SQLTruncated",
            "SQLStmt"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        120,
        "--limit stops after that many, across pages"
    );
    assert_eq!(&rows[0][0], "q00000249");
    assert_eq!(&rows[0][5], "2026-01-01T00:00:00.249Z");
    assert!(
        rows[0][8].starts_with("select 249 from t"),
        "{:?}",
        &rows[0]
    );

    // Filters: duration range in ms, user, status, top N.
    let slow = env
        .cli
        .run(&search_args(&["--min-ms", "200", "--output", "json"]));
    let slow = slow.ok().json();
    assert_eq!(slow.as_array().unwrap().len(), 50, "durations 200..249 ms");
    let mid = env.cli.run(&search_args(&[
        "--min-ms", "10", "--max-ms", "20", "--user", "u0", "--output", "json",
    ]));
    let mid: Vec<String> = mid
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["QueryID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(mid, ["q00000015", "q00000010"], "10 <= ms < 20 and user u0");
    let top = env
        .cli
        .run(&search_args(&["--top", "3", "--output", "json"]));
    let top: Vec<String> = top
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["QueryID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        top,
        ["q00000249", "q00000248", "q00000247"],
        "the 3 longest"
    );
    let keyword = env.cli.run(&search_args(&[
        "--keyword",
        "SELECT 17 ",
        "--output",
        "json",
    ]));
    assert_eq!(keyword.ok().json().as_array().unwrap().len(), 1);

    // The table: a header, aligned rows, SQL on one line.
    let table = env.cli.run(&search_args(&["--limit", "2"]));
    let text = table.ok().stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("START (UTC)") && lines[0].contains("QUERY ID"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("2026-01-01 00:00:00") && lines[1].contains("q00000249"),
        "{text}"
    );
    assert_eq!(lines[1].find("q0"), lines[2].find("q0"), "aligned: {text}");

    // Nothing matches: a header, a note, success.
    let none = env.cli.run(&search_args(&["--status", "running"]));
    assert_eq!(none.ok().stdout_text().lines().count(), 1);
    assert!(none.stderr.contains("no records match"), "{}", none.stderr);

    // Relative times reach the server as a window (nothing was recorded in the last hour).
    let recent = env.cli.run(&[
        "records",
        "search",
        "--instance",
        INSTANCE,
        "--database",
        DATABASE,
        "--start",
        "-1h",
        "--output",
        "json",
    ]);
    assert_eq!(recent.ok().json(), serde_json::json!([]));

    // A refused first call leaves stdout empty, in every format.
    for format in ["table", "json", "csv"] {
        env.cli
            .run(&[
                "records",
                "search",
                "--instance",
                "gp-nope",
                "--database",
                DATABASE,
                "--start",
                START_TIME,
                "--output",
                format,
            ])
            .fails(
                5,
                &["DescribeDiagnosisRecords failed (HTTP 404): InvalidDBInstanceId.NotFound"],
            );
    }

    // Bad input: a clear message and exit 2, before any call.
    env.cli
        .run(&search_args(&["--min-ms", "5", "--max-ms", "4"]))
        .fails(2, &["--min-ms (5) must not be greater than --max-ms (4)"]);
    env.cli
        .run(&[
            "records",
            "search",
            "--instance",
            INSTANCE,
            "--database",
            DATABASE,
            "--start",
            "yesterday",
        ])
        .fails(2, &["cannot read the time \"yesterday\"", "-6h"]);
    env.cli
        .run(&search_args(&["--top", "3", "--status", "running"]))
        .fails(2, &["cannot be used with"]);
    env.cli
        .run(&[
            "records",
            "search",
            "--instance",
            INSTANCE,
            "--database",
            DATABASE,
            "--start",
            "now",
            "--end",
            "-1h",
        ])
        .fails(2, &["must be before --end"]);
}

#[test]
fn export_wait_saves_exactly_the_bytes_of_the_download_url() {
    let env = start();
    let run = env
        .cli
        .run(&export_args(&["--wait", "--output", "out.csv"]));
    run.ok();
    assert!(run.stdout.is_empty(), "data went to the file, not stdout");
    assert!(run.stderr.contains("started"), "{}", run.stderr);
    assert!(run.stderr.contains("saved out.csv "), "{}", run.stderr);
    assert!(
        !env.work().join("out.csv.part").exists(),
        "no partial file is left"
    );
    let saved = std::fs::read(env.work().join("out.csv")).unwrap();
    assert_eq!(check_export(&saved, 0..RECORDS), RECORDS);

    let listed = env.cli.run(&[
        "exports",
        "list",
        "--instance",
        INSTANCE,
        "--output",
        "json",
    ]);
    let listed = listed.ok().json();
    let record = &listed[0];
    let id = record["DownloadId"].as_i64().unwrap();
    assert_eq!(record["Status"], "finished");
    assert_eq!(
        record["RowsDone"], RECORDS,
        "RowsDone is the file's row count once finished"
    );
    assert_eq!(
        saved,
        env.fetch_export(id),
        "the same bytes as the DownloadUrl"
    );
    assert!(
        run.stderr
            .contains(&format!("export {id} finished: {RECORDS} rows")),
        "{}",
        run.stderr
    );

    // The table lists it with its rows and file name.
    let table = env.cli.run(&["exports", "list", "--instance", INSTANCE]);
    let text = table.ok().stdout_text();
    let row = text.lines().nth(1).unwrap();
    assert!(
        row.starts_with(&format!("{id} "))
            && row.contains("finished")
            && row.contains(&RECORDS.to_string())
            && row.contains(FILE_NAME),
        "{text}"
    );
    // SLOW_SQL exports are another list: empty here.
    let slow = env.cli.run(&[
        "exports",
        "list",
        "--instance",
        INSTANCE,
        "--type",
        "SLOW_SQL",
    ]);
    assert_eq!(slow.ok().stdout_text().lines().count(), 1);

    // --wait alone saves under the server's file name, in the current directory.
    env.cli.run(&export_args(&["--wait", "--quiet"])).ok();
    let by_name = std::fs::read(env.work().join(FILE_NAME)).unwrap();
    assert_eq!(by_name, saved);

    // A directory as --output: the server's file name inside it; gzip and zh as asked.
    std::fs::create_dir(env.work().join("exports")).unwrap();
    let run = env.cli.run(&export_args(&[
        "--gzip", "--lang", "zh", "--output", "exports",
    ]));
    run.ok();
    let gz_name = format!("{FILE_NAME}.gz");
    let gz = std::fs::read(env.work().join("exports").join(&gz_name)).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    assert!(text.starts_with("查询ID,"), "{}", &text[..40]);
    assert_eq!(text.lines().count() as u64, RECORDS + 1);
}

#[test]
fn piped_stdout_is_exactly_the_data_and_progress_goes_to_stderr() {
    let env = start();
    let run = env.cli.run(&export_args(&["--wait", "--output", "-"]));
    run.ok();
    // Progress and notes were printed, on stderr only.
    assert!(run.stderr.contains("started"), "{}", run.stderr);
    assert!(run.stderr.contains("finished"), "{}", run.stderr);
    assert!(run.stderr.contains("to standard output"), "{}", run.stderr);
    assert!(!run.stderr.contains("select "), "no data on stderr");
    let id = env.server.downloads().keys().copied().max().unwrap();
    assert_eq!(
        run.stdout,
        env.fetch_export(id),
        "stdout is exactly the file"
    );
    assert_eq!(check_export(&run.stdout, 0..RECORDS), RECORDS);

    // exports download fetches the same file again, also to stdout.
    let again = env.cli.run(&[
        "exports",
        "download",
        "--instance",
        INSTANCE,
        &id.to_string(),
        "--output",
        "-",
    ]);
    assert_eq!(again.ok().stdout, run.stdout);

    // --quiet: nothing at all on stderr.
    let quiet = env
        .cli
        .run(&export_args(&["--wait", "--output", "-", "--quiet"]));
    assert_eq!(quiet.ok().stderr, "");
    assert_eq!(check_export(&quiet.stdout, 0..RECORDS), RECORDS);
}

#[test]
fn a_terminal_gets_progress_bars_and_the_data_still_goes_only_to_stdout() {
    let env = start();
    // `script` gives gpdiag a terminal for stderr while stdout goes to a file.
    let mut command = vec!["'".to_owned() + BIN + "'"];
    for arg in export_args(&["--wait", "--output", "-"]) {
        command.push(format!("'{arg}'"));
    }
    let line = format!("{} > tty-out.csv", command.join(" "));
    let out = env
        .cli
        .command(&[])
        .env("TERM", "xterm")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output_of("script", &["-q", "-e", "-c", &line, "/dev/null"]);
    let terminal = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{terminal}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(terminal.contains("finished"), "{terminal:?}");
    // A terminal: bars drawn and cleared with escape sequences (never on a pipe, see `Cli::run`).
    assert!(terminal.contains("\x1b["), "no bar was drawn: {terminal:?}");
    assert!(
        !terminal.contains("select "),
        "no data on the terminal: {terminal:?}"
    );
    let saved = std::fs::read(env.work().join("tty-out.csv")).unwrap();
    let id = env.server.downloads().keys().copied().max().unwrap();
    assert_eq!(saved, env.fetch_export(id));
}

/// Runs `program` with this command's environment and directory instead of gpdiag.
trait OutputOf {
    fn output_of(&mut self, program: &str, args: &[&str]) -> std::process::Output;
}

impl OutputOf for std::process::Command {
    fn output_of(&mut self, program: &str, args: &[&str]) -> std::process::Output {
        let mut other = std::process::Command::new(program);
        other.args(args);
        if let Some(dir) = self.get_current_dir() {
            other.current_dir(dir);
        }
        for (name, value) in self.get_envs() {
            match value {
                Some(v) => other.env(name, v),
                None => other.env_remove(name),
            };
        }
        other.stdin(std::process::Stdio::null());
        other.output().unwrap()
    }
}

#[test]
fn an_export_without_wait_prints_its_id_and_exports_download_fetches_it_later() {
    let env = start();
    let run = env.cli.run(&export_args(&[]));
    let id = printed_id(run.ok());
    assert!(
        run.stderr.contains(&format!(
            "gpdiag exports download --instance {INSTANCE} {id}"
        )),
        "{}",
        run.stderr
    );
    let dest = env.work().join("later");
    std::fs::create_dir(&dest).unwrap();
    let run = env.cli.run(&[
        "exports",
        "download",
        "--instance",
        INSTANCE,
        &id.to_string(),
        "--output",
        "later",
    ]);
    run.ok();
    let saved = std::fs::read(dest.join(FILE_NAME)).unwrap();
    assert_eq!(saved, env.fetch_export(id));

    // An ID that does not exist.
    env.cli
        .run(&["exports", "cancel", "--instance", INSTANCE, "999999"])
        .fails(5, &["InvalidDownloadId.NotFound"]);
    // A finished export cannot be canceled: the server's Code and Message.
    env.cli
        .run(&["exports", "cancel", "--instance", INSTANCE, &id.to_string()])
        .fails(5, &["IncorrectDownloadTaskState", "has already ended"]);
    // Starting one on an instance that does not exist.
    env.cli
        .run(&[
            "export",
            "--instance",
            "gp-nope",
            "--database",
            DATABASE,
            "--start",
            START_TIME,
            "--end",
            END_TIME,
            "--wait",
        ])
        .fails(
            5,
            &["DownloadDiagnosisRecords failed (HTTP 404): InvalidDBInstanceId.NotFound"],
        );
}

/// With no export worker, the test plays the worker through the store: the progress it reports
/// reaches `export --wait` as RowsDone, and a cancel ends the wait with exit 8.
#[test]
fn running_exports_report_rows_done_and_a_canceled_one_fails_the_wait() {
    let env = ClientEnv::start(RECORDS, "workers = 0", "");
    let stdout = env.work().join("wait.out");
    let stderr = env.work().join("wait.err");
    let mut waiting = env.cli.spawn(
        &export_args(&["--wait", "--output", "never.csv", "--poll-ms", "200"]),
        &stdout,
        &stderr,
    );
    let id = wait_for(
        "the export to be listed",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || env.server.downloads().keys().next().copied(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(gpdiag_store::open(&env.storage)).unwrap();
    let lease = chrono::Duration::minutes(10);
    let claimed = rt
        .block_on(store.claim_task("test-worker", chrono::Utc::now(), lease))
        .unwrap()
        .expect("the export waits for a worker");
    assert_eq!(claimed.id, id);
    let listed_rows = |rows: u64| {
        wait_for(
            "RowsDone",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let r = env.server.downloads().remove(&id).unwrap();
                (r["RowsDone"] == rows).then_some(r)
            },
        )
    };
    assert_eq!(listed_rows(0)["Status"], "running");
    assert!(rt
        .block_on(store.renew_task(id, "test-worker", chrono::Utc::now(), lease, 4242))
        .unwrap());
    listed_rows(4242);
    let list = env.cli.run(&["exports", "list", "--instance", INSTANCE]);
    let text = list.ok().stdout_text();
    assert!(
        text.lines().nth(1).unwrap().contains("running  4242"),
        "{text}"
    );
    // Plain progress lines on a non-terminal stderr, at most every few seconds.
    wait_for(
        "the progress line",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            std::fs::read_to_string(&stderr)
                .unwrap()
                .contains("4242")
                .then_some(())
        },
    );
    assert!(waiting.try_wait().unwrap().is_none(), "still waiting");

    let cancel = env
        .cli
        .run(&["exports", "cancel", "--instance", INSTANCE, &id.to_string()]);
    assert!(
        cancel
            .ok()
            .stdout_text()
            .starts_with(&format!("Canceled export {id} of {INSTANCE}")),
        "{}",
        cancel.stdout_text()
    );
    let status = wait_for(
        "the wait to end",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || waiting.try_wait().unwrap(),
    );
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(status.code(), Some(8), "{err}");
    assert!(
        err.contains(&format!(
            "error: export {id} failed on the server: canceled"
        )),
        "{err}"
    );
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    assert_eq!(std::fs::read(&stdout).unwrap(), b"");
    assert!(!env.work().join("never.csv").exists() && !env.work().join("never.csv.part").exists());
    // The failed export keeps the rows it had written.
    let r = env.server.downloads().remove(&id).unwrap();
    assert_eq!(
        (r["Status"].as_str(), r["RowsDone"].as_u64()),
        (Some("failed"), Some(4242))
    );
}

#[test]
fn wrong_or_missing_keys_show_the_servers_code_and_message_with_documented_exit_codes() {
    let env = start();
    let wrong_secret = env.cli.with(
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        Some("not-the-secret-xyz"),
    );
    for signature in ["acs3", "v1"] {
        let run = wrong_secret.run(&["instances", "list", "--signature", signature]);
        run.fails(
            4,
            &[
                "DescribeDBInstances failed (HTTP 400): SignatureDoesNotMatch: ",
                "request ID:",
                "check the key",
            ],
        );
        assert!(!run.stderr.contains("not-the-secret-xyz"), "{}", run.stderr);
    }
    let unknown = env
        .cli
        .with("ALIBABA_CLOUD_ACCESS_KEY_ID", Some("LTAIdoesnotexist0000"));
    unknown
        .run(&["exports", "list", "--instance", INSTANCE])
        .fails(
            4,
            &["InvalidAccessKeyId.NotFound: Specified access key is not found."],
        );
    unknown
        .run(&export_args(&["--wait"]))
        .fails(4, &["InvalidAccessKeyId.NotFound"]);

    // No key at all: exit 3 before any call.
    let none = env
        .cli
        .with("ALIBABA_CLOUD_ACCESS_KEY_ID", None)
        .with("ALIBABA_CLOUD_ACCESS_KEY_SECRET", None);
    none.run(&["instances", "list"])
        .fails(3, &["no credentials", "ALIBABA_CLOUD_ACCESS_KEY_ID"]);
    none.run(&["instances", "list", "--profile", "ci"])
        .fails(3, &["--profile ci", "does not exist"]);

    // Nothing listening: exit 7.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.cli
        .run(&[
            "instances",
            "list",
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
        ])
        .fails(7, &["cannot reach http://127.0.0.1:", "connection failed"]);
    // An endpoint that is not a URL: exit 2.
    env.cli
        .run(&["instances", "list", "--endpoint", "http://h/some/path"])
        .fails(2, &["the endpoint \"http://h/some/path\" is not usable"]);
}

#[test]
fn a_profile_in_the_credentials_file_gives_key_endpoint_and_region() {
    let env = start();
    let key = creds();
    let file = env.work().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[ci]\naccess_key_id = \"{}\"\naccess_key_secret = \"env:CI_SECRET\"\nendpoint = \"http://{}\"\nregion = \"cn-hangzhou\"\n\n[default]\naccess_key_id = \"LTAIwrong\"\naccess_key_secret = \"wrong\"\n",
            key.access_key_id, env.server.addr
        ),
    )
    .unwrap();
    let no_env = env
        .cli
        .with("ALIBABA_CLOUD_ACCESS_KEY_ID", None)
        .with("ALIBABA_CLOUD_ACCESS_KEY_SECRET", None)
        .with("GPDIAG_ENDPOINT", None)
        .with("GPDIAG_CREDENTIALS_FILE", Some(file.to_str().unwrap()))
        .with("CI_SECRET", Some(&key.access_key_secret));
    let run = no_env.run(&["instances", "list", "--profile", "ci", "--output", "json"]);
    assert_eq!(run.ok().json()[0]["DBInstanceId"], INSTANCE);
    // Others can read the file (the test wrote it with the default umask): a warning.
    assert!(
        run.stderr.contains("can be read by other users"),
        "{}",
        run.stderr
    );
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = no_env.run(&["instances", "list", "--profile", "ci"]);
    assert_eq!(run.ok().stderr, "");
    // GPDIAG_PROFILE works as --profile does.
    no_env
        .with("GPDIAG_PROFILE", Some("ci"))
        .run(&["instances", "list"])
        .ok();
    // Without --profile the default profile is used: its wrong key is refused by the server.
    no_env
        .with(
            "GPDIAG_ENDPOINT",
            Some(&format!("http://{}", env.server.addr)),
        )
        .run(&["instances", "list"])
        .fails(4, &["InvalidAccessKeyId.NotFound"]);
    no_env
        .run(&["instances", "list", "--profile", "staging"])
        .fails(3, &["has no profile [staging]"]);
    // The default location is under HOME (the test's directory here).
    let home_file = env.work().join(".config/gpdiag/credentials");
    std::fs::create_dir_all(home_file.parent().unwrap()).unwrap();
    std::fs::copy(&file, &home_file).unwrap();
    no_env
        .with("GPDIAG_CREDENTIALS_FILE", None)
        .run(&["instances", "list", "--profile", "ci"])
        .ok();
}

#[test]
fn call_signs_any_action_and_prints_its_json() {
    let env = start();
    for signature in ["acs3", "v1"] {
        let run = env.cli.run(&[
            "call",
            "DescribeDBInstanceAttribute",
            &format!("DBInstanceId={INSTANCE}"),
            "--signature",
            signature,
        ]);
        let body = run.ok().json();
        assert_eq!(
            body["Items"]["DBInstanceAttribute"][0]["DBInstanceId"],
            INSTANCE
        );
        assert!(body["RequestId"].is_string());
    }
    // A value with = and JSON in it goes through as it is.
    let run = env.cli.run(&[
        "call",
        "DescribeDiagnosisRecords",
        &format!("DBInstanceId={INSTANCE}"),
        &format!("Database={DATABASE}"),
        &format!("StartTime={START_TIME}"),
        &format!("EndTime={END_TIME}"),
        r#"QueryCondition={"Type":"maxCost","Value":"2"}"#,
    ]);
    let body = run.ok().json();
    assert_eq!(body["TotalCount"], 2, "{body}");
    assert_eq!(body["Items"][0]["QueryID"], "q00000249");
    // Format=XML: printed as it came.
    let run = env.cli.run(&[
        "call",
        "DescribeDownloadRecords",
        &format!("DBInstanceId={INSTANCE}"),
        "Format=XML",
    ]);
    assert!(
        run.ok().stdout_text().starts_with("<?xml"),
        "{}",
        run.stdout_text()
    );

    env.cli
        .run(&["call", "DescribeDiagnosisRecords"])
        .fails(5, &["MissingParameter", "DBInstanceId"]);
    env.cli
        .run(&["call", "NoSuchAction"])
        .fails(5, &["InvalidAction.NotFound"]);
    env.cli
        .run(&["call", "DescribeDBInstances", "RegionId"])
        .fails(2, &["\"RegionId\" is not Name=Value"]);
}

#[test]
fn every_command_has_help_with_examples() {
    let cli = Cli::new("127.0.0.1:9", Path::new("/"));
    for path in [
        &[][..],
        &["serve"],
        &["collect"],
        &["keys"],
        &["keys", "create"],
        &["keys", "disable"],
        &["records"],
        &["records", "import"],
        &["records", "search"],
        &["instances"],
        &["instances", "list"],
        &["instances", "show"],
        &["export"],
        &["exports"],
        &["exports", "list"],
        &["exports", "download"],
        &["exports", "cancel"],
        &["call"],
    ] {
        let mut args = path.to_vec();
        args.push("--help");
        let run = cli.run(&args);
        let text = run.ok().stdout_text();
        assert!(
            text.contains("Example"),
            "gpdiag {path:?} --help has no examples:\n{text}"
        );
    }
    // Usage errors exit 2 (clap's own).
    let run = cli.run(&["export", "--instance", "x"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--database"), "{}", run.stderr);
}

/// A stand-in for a server that misbehaves: answers each request by its first line (`POST /?…`
/// or `GET /file`) with the raw HTTP text `answer` returns, then closes the connection.
struct FakeServer {
    addr: String,
}

impl FakeServer {
    fn start(answer: impl Fn(&str, &str) -> Vec<u8> + Send + 'static) -> FakeServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let own = addr.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let first = head.lines().next().unwrap_or_default().to_owned();
                let _ = stream.write_all(&answer(&first, &own));
                let _ = stream.flush();
            }
        });
        FakeServer { addr }
    }
}

#[test]
fn downloads_that_break_off_or_are_refused_exit_9_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let download = |fake: &FakeServer| {
        Cli::new(&fake.addr, dir.path()).run(&["exports", "download", "--instance", "gp-x", "1"])
    };
    // Content-Length says 100, 40 bytes come, then the connection closes; every time, since
    // this server ignores Range: each retry starts over, and after the last one it is exit 9
    // (tests/download_resume.rs has the resuming itself).
    let short = FakeServer::start(|first, addr| {
        if first.starts_with("POST") {
            cli::one_finished_export(addr)
        } else {
            cli::http("200 OK", "Content-Length: 100\r\n", &[b'x'; 40])
        }
    });
    download(&short).fails(
        9,
        &[
            "broke off after 40 of 100 bytes",
            "gave up after 5 retries",
            "tries again with a fresh link",
        ],
    );
    // An expired link.
    let expired = FakeServer::start(|first, addr| {
        if first.starts_with("POST") {
            cli::one_finished_export(addr)
        } else {
            cli::link_expired()
        }
    });
    download(&expired).fails(9, &["answered HTTP 403: The link has expired."]);
    // The whole file: saved under the server's name, with the row count.
    let whole = FakeServer::start(|first, addr| {
        if first.starts_with("POST") {
            cli::one_finished_export(addr)
        } else {
            cli::http("200 OK", "Content-Length: 6\r\n", b"a,b\r\n\n")
        }
    });
    let run = download(&whole);
    assert!(
        run.ok().stderr.contains("saved f.csv (6 bytes, 3 rows)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(dir.path().join("f.csv")).unwrap(),
        b"a,b\r\n\n"
    );
    std::fs::remove_file(dir.path().join("f.csv")).unwrap();
    // Neither failure left a file behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // An answer that is not the API's: exit 6.
    let proxy = FakeServer::start(|_, _| {
        let body = b"<html>Bad Gateway</html>";
        cli::http(
            "502 Bad Gateway",
            &format!("Content-Length: {}\r\n", body.len()),
            body,
        )
    });
    Cli::new(&proxy.addr, dir.path())
        .run(&["instances", "list"])
        .fails(
            6,
            &["answered HTTP 502, which is not an API answer: <html>Bad Gateway</html>"],
        );
    // A server error with the API's envelope: exit 6 with its Code and Message.
    let failing = FakeServer::start(|_, _| {
        let body = br#"{"RequestId":"R-2","HostId":"h","Code":"ServiceUnavailable","Message":"The store is unavailable.","Recommend":""}"#;
        cli::http(
            "503 Service Unavailable",
            &format!("Content-Length: {}\r\n", body.len()),
            body,
        )
    });
    Cli::new(&failing.addr, dir.path())
        .run(&["instances", "list"])
        .fails(
            6,
            &[
                "(HTTP 503): ServiceUnavailable: The store is unavailable.",
                "request ID: R-2",
            ],
        );
}
