//! `gpdiag-bench exports`: the export pipeline end to end against PostgreSQL's own `COPY`.
//!
//! For every count N: N generated records, all in one database of one instance, are loaded
//! (not timed) into a fresh SQLite store and, the same records, into a fresh database on a
//! private PostgreSQL cluster started with `scripts/pg-cluster`. Then, alternating, several
//! times each:
//!
//! - gpdiag: the real release binary on the SQLite store with `[objects] url = file://…`; one
//!   signed `DownloadDiagnosisRecords` for the whole window and the database, then
//!   `DescribeDownloadRecords` every 50 ms until the task is finished. The clock runs from the
//!   call to the answer that says finished. The server's resident memory is sampled every
//!   20 ms meanwhile (and its high-water mark read at the end). The file on disk must hold N
//!   CSV records.
//! - PostgreSQL: the same selection, columns, formatting and order as a server-side
//!   `COPY (SELECT …) TO '<file>' WITH (FORMAT csv, HEADER)`, timed by the client.
//!
//! The first repetition's two files are compared record by record (parsed as CSV, the header
//! rows aside): they must hold the same rows in the same order. Medians are quoted, with the
//! bars: gpdiag's rows/s at least COPY's, and gpdiag's peak RSS at most 100 MiB for 5M rows.
//! When asked (the default), gpdiag on the PostgreSQL store is measured too, once, without bars.

use crate::client::{Account, Connection, RequestFactory, Signature};
use crate::median;
use crate::records::{cpu_seconds, pg_connect, thousands, PgCluster};
use crate::rss::{status_kib, RssSampler, RSS_SAMPLE};
use crate::servers::{self, ServerProcess};
use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Duration as Span, Utc};
use gpdiag_bench::generate::{self, Generator, Settings};
use gpdiag_core::{QueryRecord, RecordFilter, RecordOrder, TimeWindow};
use gpdiag_ingest::import::BATCH;
use gpdiag_store::{Store, StoreError};
use hyper::StatusCode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// gpdiag must export at least as many rows per second as `COPY`.
const RATIO_BAR: f64 = 1.0;
/// gpdiag's peak resident memory during an export of `RSS_BAR_ROWS` rows, in MiB.
const RSS_BAR_MIB: f64 = 100.0;
/// The row count the memory bar is meant for (and every larger one).
const RSS_BAR_ROWS: u64 = 5_000_000;
/// `--quick` exports this many records.
const QUICK_COUNT: u64 = 200_000;
/// Every record goes into this database, so one export (Database is required) takes them all.
const DATABASE: &str = "dw_prod";
/// How often the task's status is asked for.
const POLL: Duration = Duration::from_millis(50);
/// An export that takes longer than this is a failure of the run.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(1800);
/// High enough that the status polls are never throttled.
const UNTHROTTLED_CALLS_PER_SECOND: u32 = 1_000_000;

#[derive(clap::Args)]
pub struct ExportsArgs {
    /// The gpdiag binary to start (build it with --release).
    #[arg(long)]
    gpdiag: PathBuf,
    /// Record counts to export, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_000u64, 5_000_000])]
    counts: Vec<u64>,
    /// Smoke check: 200,000 records only (overrides --counts).
    #[arg(long)]
    quick: bool,
    /// Measurements of each side per count, alternating gpdiag and COPY; medians are quoted.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// Seed of the records.
    #[arg(long, default_value_t = generate::DEFAULT_SEED)]
    seed: u64,
    /// Days the records' start times span (one export window covers them all).
    #[arg(long, default_value_t = generate::DEFAULT_DAYS)]
    days: u32,
    /// Skip the extra, bar-less measurement of gpdiag on the PostgreSQL store.
    #[arg(long)]
    no_postgres_gpdiag: bool,
    /// Where the temporary databases and files go (default: the system temporary directory).
    /// 5 million records take several GB per store plus about 1.5 GB per export file.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The script that starts and stops the private PostgreSQL cluster.
    #[arg(long, default_value = "scripts/pg-cluster")]
    pg_cluster: PathBuf,
}

/// One timed export.
#[derive(Clone)]
struct Measure {
    seconds: f64,
    rows: u64,
    bytes: u64,
    /// CPU seconds the exporting process (gpdiag, or the PostgreSQL backend) used meanwhile.
    cpu: Option<f64>,
    /// gpdiag only: the largest sampled VmRSS and the final VmHWM, in MiB.
    rss_mib: Option<f64>,
    hwm_mib: Option<f64>,
    /// gpdiag only: from the worker's "export started" to "export finished" (its log).
    worker_seconds: Option<f64>,
}

impl Measure {
    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds
    }

    fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
}

/// What one count measured.
struct CountOutcome {
    count: u64,
    gpdiag: Vec<Measure>,
    copy: Vec<Measure>,
    gpdiag_postgres: Option<Measure>,
}

pub async fn run(args: ExportsArgs) -> anyhow::Result<()> {
    let counts = if args.quick {
        vec![QUICK_COUNT]
    } else {
        args.counts.clone()
    };
    ensure!(
        !counts.is_empty() && counts.iter().all(|&n| n > 0),
        "--counts must name at least one count, each at least 1"
    );
    ensure!(args.days > 0, "--days must be at least 1");
    ensure!(args.repetitions > 0, "--repetitions must be at least 1");
    let binary = args
        .gpdiag
        .canonicalize()
        .with_context(|| format!("gpdiag binary {} not found", args.gpdiag.display()))?;
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    if let Err(StoreError::Unsupported(_, why)) =
        gpdiag_store::open("postgres://gpdiag@127.0.0.1:1/none").await
    {
        bail!("the COPY baseline needs PostgreSQL, and this build's store says: {why}");
    }
    let account = Account::generate(0);

    println!(
        "gpdiag exports benchmark{}",
        if args.quick { " (quick)" } else { "" }
    );
    println!(
        "  counts {}; records (seed {}) over {} days from {}, instance {}, all in database {DATABASE}",
        counts
            .iter()
            .map(|&n| thousands(n))
            .collect::<Vec<_>>()
            .join(", "),
        args.seed,
        args.days,
        generate::DEFAULT_START,
        account.instance_id,
    );
    println!(
        "  gpdiag: DownloadDiagnosisRecords (ACS3-signed, default order StartTime desc, Lang en, no BOM, no gzip) on the SQLite store, objects on file://; clock from the call to the DescribeDownloadRecords answer saying finished (polled every {} ms); VmRSS sampled every {} ms",
        POLL.as_millis(),
        RSS_SAMPLE.as_millis()
    );
    println!(
        "  baseline: PostgreSQL COPY (SELECT the same 8 columns, formatted alike, same order) TO a server-side file WITH (FORMAT csv, HEADER), timed by the client"
    );
    println!(
        "  {} repetition(s) per count, alternating gpdiag and COPY; MB = 10^6 bytes of the file; MiB = 2^20 bytes of memory",
        args.repetitions
    );
    println!("  gpdiag binary {}", binary.display());
    println!("  temporary files under {}", base.display());
    println!(
        "  cores available: {}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let cluster = PgCluster::start(&args.pg_cluster, &base)?;
    println!(
        "  private PostgreSQL cluster {} in {}",
        cluster.url,
        cluster.dir()
    );
    let ctx = Ctx {
        binary: &binary,
        account: &account,
        base: &base,
        cluster: &cluster,
        repetitions: args.repetitions,
        postgres_gpdiag: !args.no_postgres_gpdiag,
    };
    let mut problems = Vec::new();
    let mut outcomes = Vec::new();
    for &count in &counts {
        let settings = Settings {
            seed: args.seed,
            count,
            instance: account.instance_id.clone(),
            span: Span::days(i64::from(args.days)),
            ..Settings::default()
        };
        outcomes.push(one_count(&ctx, &settings, &mut problems).await?);
    }
    cluster.stop()?;

    summary(&outcomes);
    if !problems.is_empty() {
        bail!(
            "the run is not valid, its numbers mean nothing:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

struct Ctx<'a> {
    binary: &'a Path,
    account: &'a Account,
    base: &'a Path,
    cluster: &'a PgCluster,
    repetitions: usize,
    postgres_gpdiag: bool,
}

async fn one_count(
    ctx: &Ctx<'_>,
    settings: &Settings,
    problems: &mut Vec<String>,
) -> anyhow::Result<CountOutcome> {
    let count = settings.count;
    println!("\n{} records", thousands(count));
    let work = tempfile::Builder::new()
        .prefix("gpdiag-bench-exports-")
        .tempdir_in(ctx.base)
        .with_context(|| format!("cannot create a directory in {}", ctx.base.display()))?;
    let sqlite_path = work.path().join("records.db");
    let sqlite_url = format!("sqlite://{}", sqlite_path.display());
    let pg_database = format!("gpdiag_bench_exports_{count}");
    let admin = pg_connect(&ctx.cluster.url).await?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {pg_database}"),
        format!("CREATE DATABASE {pg_database}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .context("cannot create the benchmark database")?;
    }
    let pg_url = ctx
        .cluster
        .url
        .rsplit_once('/')
        .map(|(server, _)| format!("{server}/{pg_database}"))
        .context("the cluster's URL has no database part")?;
    println!("  stores {sqlite_url} and {pg_url}");

    load(settings, &sqlite_url, &pg_url).await?;
    let sqlite_size: u64 = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", sqlite_path.display())).ok())
        .map(|m| m.len())
        .sum();
    let pg = pg_connect(&pg_url).await?;
    let started = Instant::now();
    // Hint bits and the visibility map set now, so no COPY pays for them; SQLite's side was
    // checkpointed when its store closed.
    pg.batch_execute("VACUUM ANALYZE query_records").await?;
    let pg_size: i64 = admin
        .query_one("SELECT pg_database_size($1::text)", &[&pg_database])
        .await?
        .get(0);
    println!(
        "  VACUUM ANALYZE on PostgreSQL took {:.1} s; SQLite {:.2} GB, PostgreSQL {:.2} GB",
        started.elapsed().as_secs_f64(),
        sqlite_size as f64 / 1e9,
        pg_size as f64 / 1e9
    );

    // The whole span, to the minute (the API's precision); every record starts inside it.
    let window_start = settings.start;
    let window_end = settings.start + settings.span + Span::minutes(1);
    let export = ExportCall {
        instance: &ctx.account.instance_id,
        start: window_start,
        end: window_end,
    };
    let backend_pid: i32 = pg.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    let copy_file = PathBuf::from(ctx.cluster.dir()).join("copy-export.csv");
    let copy_sql = copy_statement(&export, &copy_file);
    println!("  COPY statement: {copy_sql}");
    let keep = work.path().join("gpdiag-export.csv");

    let mut outcome = CountOutcome {
        count,
        gpdiag: Vec::new(),
        copy: Vec::new(),
        gpdiag_postgres: None,
    };
    for repetition in 1..=ctx.repetitions {
        let label = format!("run {repetition}/{}", ctx.repetitions);
        let (g, info) = gpdiag_export(ctx, &sqlite_url, &export, Some(&keep)).await?;
        print_gpdiag(&label, "gpdiag", &g, &info);
        let c = copy_export(&pg, &copy_sql, &copy_file, backend_pid).await?;
        print_measure(&label, "COPY", &c);
        if c.rows != count {
            problems.push(format!("{count}: COPY wrote {} rows, not {count}", c.rows));
        }
        // Counting (and once comparing) happens outside both clocks.
        let started = Instant::now();
        let csv_rows = if repetition == 1 {
            match compare_files(&keep, &copy_file)? {
                Comparison::Same(rows) => {
                    println!(
                        "    the gpdiag file and the COPY file hold the same {} records in the same order (checked in {:.1} s)",
                        thousands(rows),
                        started.elapsed().as_secs_f64()
                    );
                    (rows, rows)
                }
                Comparison::Differ { at, gpdiag, copy } => {
                    problems.push(format!(
                        "{count}: the files differ at data record {at}: gpdiag {gpdiag:?}, COPY {copy:?}"
                    ));
                    (count_records(&keep)?, count_records(&copy_file)?)
                }
            }
        } else {
            (count_records(&keep)?, count_records(&copy_file)?)
        };
        if csv_rows.0 != count || csv_rows.1 != count || g.rows != count {
            problems.push(format!(
                "{count} {label}: gpdiag reported {} rows, its file holds {} CSV records, COPY's {}",
                g.rows, csv_rows.0, csv_rows.1
            ));
        }
        std::fs::remove_file(&keep).ok();
        std::fs::remove_file(&copy_file).ok();
        outcome.gpdiag.push(g);
        outcome.copy.push(c);
    }

    let (rows, seconds) = stream_only(&sqlite_url, &export).await?;
    println!(
        "  where gpdiag's time goes: Store::stream_records alone on that SQLite store (in this process, no CSV, no file) {seconds:.2} s = {:.0} rows/s",
        rows as f64 / seconds
    );
    if rows != count {
        problems.push(format!(
            "{count}: Store::stream_records gave {rows} records"
        ));
    }

    if ctx.postgres_gpdiag {
        let (g, info) = gpdiag_export(ctx, &pg_url, &export, Some(&keep)).await?;
        print_gpdiag("extra", "gpdiag on PostgreSQL", &g, &info);
        let rows = count_records(&keep)?;
        std::fs::remove_file(&keep).ok();
        if rows != count || g.rows != count {
            problems.push(format!(
                "{count} gpdiag on PostgreSQL: reported {} rows, its file holds {rows} CSV records",
                g.rows
            ));
        }
        outcome.gpdiag_postgres = Some(g);
    }
    print_medians(&outcome);

    drop(pg);
    admin
        .batch_execute(&format!("DROP DATABASE {pg_database}"))
        .await
        .context("cannot drop the benchmark database")?;
    drop(work);
    Ok(outcome)
}

/// Loads the generated records, every one moved into `DATABASE`, into both stores at once
/// (one generator thread, a copy of every batch for each store). Not part of any bar.
async fn load(settings: &Settings, sqlite_url: &str, pg_url: &str) -> anyhow::Result<()> {
    let sqlite = gpdiag_store::open(sqlite_url).await?;
    let postgres = gpdiag_store::open(pg_url).await?;
    let (sqlite_tx, sqlite_rx) = tokio::sync::mpsc::channel::<Vec<QueryRecord>>(4);
    let (pg_tx, pg_rx) = tokio::sync::mpsc::channel::<Vec<QueryRecord>>(4);
    let generator_settings = settings.clone();
    let producer = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(BATCH);
        let send = |batch: Vec<QueryRecord>| {
            pg_tx.blocking_send(batch.clone()).is_ok() && sqlite_tx.blocking_send(batch).is_ok()
        };
        for mut record in Generator::new(generator_settings) {
            record.database = DATABASE.to_owned();
            batch.push(record);
            if batch.len() == BATCH
                && !send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
            {
                return;
            }
        }
        if !batch.is_empty() {
            send(batch);
        }
    });
    let started = Instant::now();
    let (a, b) = tokio::join!(
        insert_all(sqlite, sqlite_rx, started),
        insert_all(postgres, pg_rx, started)
    );
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the record generator panicked"))?;
    let (sqlite_rows, sqlite_seconds) = a.context("loading SQLite")?;
    let (pg_rows, pg_seconds) = b.context("loading PostgreSQL")?;
    ensure!(
        sqlite_rows == settings.count && pg_rows == settings.count,
        "loaded {sqlite_rows} rows into SQLite and {pg_rows} into PostgreSQL, not {}",
        settings.count
    );
    println!(
        "  loaded (not timed for any bar, both at once): SQLite {:.1} s, PostgreSQL {:.1} s",
        sqlite_seconds, pg_seconds
    );
    Ok(())
}

/// Upserts every batch; closes the store. Returns the rows and the seconds until the last.
async fn insert_all(
    store: Arc<dyn Store>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<QueryRecord>>,
    started: Instant,
) -> anyhow::Result<(u64, f64)> {
    let mut written = 0;
    while let Some(batch) = rx.recv().await {
        written += store
            .upsert_records(batch)
            .await
            .context("Store::upsert_records failed")?;
    }
    drop(store);
    Ok((written, started.elapsed().as_secs_f64()))
}

/// Reads the export's selection through `Store::stream_records` and drops it: the floor under
/// gpdiag's time on this store. Returns the records and the seconds.
async fn stream_only(url: &str, export: &ExportCall<'_>) -> anyhow::Result<(u64, f64)> {
    let store = gpdiag_store::open(url).await?;
    let filter = RecordFilter {
        instance: export.instance.to_owned(),
        database: Some(DATABASE.to_owned()),
        window: TimeWindow::new(export.start, export.end)?,
        user: None,
        keyword: None,
        condition: None,
    };
    let started = Instant::now();
    let mut batches = store.stream_records(&filter, RecordOrder::default(), 1000);
    let mut rows = 0;
    while let Some(batch) = batches.recv().await {
        rows += batch?.len() as u64;
    }
    Ok((rows, started.elapsed().as_secs_f64()))
}

/// The export asked for: every record of `DATABASE` of the instance within the window.
struct ExportCall<'a> {
    instance: &'a str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// What the gpdiag side saw besides the measure: the server's own timeline of the task.
struct GpdiagInfo {
    /// From the call to the worker's "export started" log line.
    queued_ms: Option<f64>,
    /// From "export started" to "export finished".
    worker_seconds: Option<f64>,
    /// From "export finished" to the answer saying finished.
    seen_ms: Option<f64>,
    polls: usize,
    pid: u32,
}

/// Starts gpdiag on `storage`, runs one export and waits for it; moves the file to `keep`.
async fn gpdiag_export(
    ctx: &Ctx<'_>,
    storage: &str,
    export: &ExportCall<'_>,
    keep: Option<&Path>,
) -> anyhow::Result<(Measure, GpdiagInfo)> {
    let server = servers::start_gpdiag_on(
        ctx.binary,
        std::slice::from_ref(ctx.account),
        Some(UNTHROTTLED_CALLS_PER_SECOND),
        Some(storage),
    )
    .await?;
    let pid = server.pid();
    let factory = RequestFactory::new(server.addr, vec![ctx.account.clone()], Signature::Acs3);
    let mut connection = Connection::open(server.addr).await?;
    // A first call, so the connection and the server's first-call costs are paid already.
    describe(&mut connection, &factory, ctx.account).await?;

    let sampler = RssSampler::start(pid);
    let cpu_before = cpu_seconds(&format!("/proc/{pid}/stat"));
    let params = params(&[
        ("DBInstanceId", export.instance),
        ("Database", DATABASE),
        ("StartTime", &api_minute(export.start)),
        ("EndTime", &api_minute(export.end)),
    ]);
    let request = factory.build_call(0, "DownloadDiagnosisRecords", &params)?;
    let called_at = Utc::now();
    let started = Instant::now();
    let reply = connection.send(request).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "DownloadDiagnosisRecords answered HTTP {}: {}",
        reply.status.as_u16(),
        reply.body_text()
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let id: i64 = body
        .get("DownloadId")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no DownloadId in {}", reply.body_text()))?;
    let mut polls = 0;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let record = loop {
        tick.tick().await;
        polls += 1;
        let records = describe(&mut connection, &factory, ctx.account).await?;
        let Some(record) = records
            .into_iter()
            .find(|r| r.get("DownloadId").and_then(serde_json::Value::as_i64) == Some(id))
        else {
            // The registry may not list a task created a moment ago yet.
            continue;
        };
        match record.get("Status").and_then(serde_json::Value::as_str) {
            Some("finished") => break record,
            Some("failed") => bail!("the export failed: {record}"),
            _ if started.elapsed() > EXPORT_TIMEOUT => {
                bail!("the export did not finish within {EXPORT_TIMEOUT:?}: {record}")
            }
            _ => {}
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let seen_at = Utc::now();
    let cpu = cpu_seconds(&format!("/proc/{pid}/stat"))
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    let hwm_mib = status_kib(pid, "VmHWM:").map(|k| k as f64 / 1024.0);
    let rss_mib = sampler.stop().map(|k| k as f64 / 1024.0);
    ensure!(
        record
            .get("DownloadUrl")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|u| !u.is_empty()),
        "the finished export has no DownloadUrl: {record}"
    );
    let file_name = record
        .get("FileName")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let file = find_export_file(&server, &file_name)?;
    let bytes = std::fs::metadata(&file)?.len();
    let timeline = server_timeline(&server, called_at, seen_at);
    if let Some(keep) = keep {
        std::fs::rename(&file, keep)
            .or_else(|_| std::fs::copy(&file, keep).map(|_| ()))
            .with_context(|| format!("cannot keep {}", file.display()))?;
    }
    let rows = rows_done(&server, id);
    server.stop().await?;
    let (queued_ms, worker_seconds, seen_ms) = timeline;
    Ok((
        Measure {
            seconds,
            rows: rows.unwrap_or(0),
            bytes,
            cpu,
            rss_mib,
            hwm_mib,
            worker_seconds,
        },
        GpdiagInfo {
            queued_ms,
            worker_seconds,
            seen_ms,
            polls,
            pid,
        },
    ))
}

/// The rows the worker reported in its "export finished" log line.
fn rows_done(server: &ServerProcess, id: i64) -> Option<u64> {
    let text = std::fs::read_to_string(server.log_path()?).ok()?;
    let task = format!("task={id}");
    text.lines()
        .filter(|l| l.contains("export finished") && l.contains(&task))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("rows="))
                .and_then(|n| n.parse().ok())
        })
}

/// From the server's log: call → "export started", "export started" → "export finished",
/// "export finished" → the answer that said finished.
fn server_timeline(
    server: &ServerProcess,
    called: DateTime<Utc>,
    seen: DateTime<Utc>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    let Some(text) = server
        .log_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
    else {
        return (None, None, None);
    };
    let at = |what: &str| -> Option<DateTime<Utc>> {
        let line = text.lines().find(|l| l.contains(what))?;
        let stamp = line.split_whitespace().next()?;
        DateTime::parse_from_rfc3339(stamp)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let (started, finished) = (at("export started"), at("export finished"));
    let ms = |d: Span| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    (
        started.map(|s| ms(s - called)),
        started.zip(finished).map(|(s, f)| ms(f - s) / 1000.0),
        finished.map(|f| ms(seen - f)),
    )
}

/// The one finished object under the server's `objects/` directory.
fn find_export_file(server: &ServerProcess, file_name: &str) -> anyhow::Result<PathBuf> {
    let root = server
        .dir()
        .context("the server has no directory")?
        .join("objects");
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name().to_string_lossy() == file_name {
                found.push(entry.path());
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => bail!(
            "expected one file named {file_name:?} under {}, found {n}",
            root.display()
        ),
    }
}

/// `DescribeDownloadRecords` for the account's instance: its `Records`.
async fn describe(
    connection: &mut Connection,
    factory: &RequestFactory,
    account: &Account,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let request = factory.build_call(
        0,
        "DescribeDownloadRecords",
        &params(&[("DBInstanceId", &account.instance_id)]),
    )?;
    let reply = connection.send(request).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "DescribeDownloadRecords answered HTTP {}: {}",
        reply.status.as_u16(),
        reply.body_text()
    );
    let mut body: serde_json::Value = serde_json::from_slice(&reply.body)?;
    match body.get_mut("Records").map(serde_json::Value::take) {
        Some(serde_json::Value::Array(records)) => Ok(records),
        _ => bail!(
            "DescribeDownloadRecords answered without Records: {}",
            reply.body_text()
        ),
    }
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The API's request time format, to the minute.
fn api_minute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

/// A string literal for SQL text that cannot take parameters (COPY).
fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The baseline: the records gpdiag exports, in its columns, formats and order.
fn copy_statement(export: &ExportCall<'_>, file: &Path) -> String {
    let time = |t: DateTime<Utc>| sql_literal(&t.to_rfc3339());
    format!(
        "COPY (SELECT query_id, session_id, database, user_name, \
         CASE WHEN running THEN 'running' ELSE 'finished' END, \
         to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
         duration_ms, sql FROM query_records \
         WHERE instance = {} AND database = {} AND start_time >= {}::timestamptz AND start_time < {}::timestamptz \
         ORDER BY start_time DESC, query_id DESC) TO {} WITH (FORMAT csv, HEADER)",
        sql_literal(export.instance),
        sql_literal(DATABASE),
        time(export.start),
        time(export.end),
        sql_literal(&file.display().to_string()),
    )
}

/// One COPY to a server-side file, timed by the client.
async fn copy_export(
    pg: &tokio_postgres::Client,
    sql: &str,
    file: &Path,
    backend_pid: i32,
) -> anyhow::Result<Measure> {
    std::fs::remove_file(file).ok();
    let stat = format!("/proc/{backend_pid}/stat");
    let cpu_before = cpu_seconds(&stat);
    let started = Instant::now();
    let rows = pg.execute(sql, &[]).await.context("COPY failed")?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&stat).zip(cpu_before).map(|(a, b)| a - b);
    let bytes = std::fs::metadata(file)
        .with_context(|| format!("COPY wrote no {}", file.display()))?
        .len();
    Ok(Measure {
        seconds,
        rows,
        bytes,
        cpu,
        rss_mib: None,
        hwm_mib: None,
        worker_seconds: None,
    })
}

/// CSV records after the header row.
fn count_records(path: &Path) -> anyhow::Result<u64> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .buffer_capacity(1 << 20)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    while reader
        .read_byte_record(&mut record)
        .with_context(|| format!("{} is not valid CSV", path.display()))?
    {
        n += 1;
    }
    Ok(n)
}

enum Comparison {
    Same(u64),
    Differ {
        at: u64,
        gpdiag: String,
        copy: String,
    },
}

/// Both files record by record, their header rows aside.
fn compare_files(gpdiag: &Path, copy: &Path) -> anyhow::Result<Comparison> {
    let open = |path: &Path| {
        csv::ReaderBuilder::new()
            .has_headers(true)
            .buffer_capacity(1 << 20)
            .from_path(path)
            .with_context(|| format!("cannot open {}", path.display()))
    };
    let (mut a, mut b) = (open(gpdiag)?, open(copy)?);
    let (mut ra, mut rb) = (csv::ByteRecord::new(), csv::ByteRecord::new());
    let mut n = 0;
    loop {
        let more_a = a.read_byte_record(&mut ra)?;
        let more_b = b.read_byte_record(&mut rb)?;
        if !more_a && !more_b {
            return Ok(Comparison::Same(n));
        }
        n += 1;
        if more_a != more_b || ra != rb {
            let show = |more: bool, r: &csv::ByteRecord| {
                if more {
                    format!("{r:?}").chars().take(300).collect()
                } else {
                    "(end of file)".to_owned()
                }
            };
            return Ok(Comparison::Differ {
                at: n,
                gpdiag: show(more_a, &ra),
                copy: show(more_b, &rb),
            });
        }
    }
}

fn print_measure(label: &str, name: &str, m: &Measure) {
    println!(
        "  {label} {name:<8} {:>8.2} s {:>11.0} rows/s {:>7.1} MB/s  file {:>8.1} MB{}",
        m.seconds,
        m.rows_per_second(),
        m.mb_per_second(),
        m.bytes as f64 / 1e6,
        m.cpu
            .map_or_else(String::new, |c| format!("  CPU {c:.1} s")),
    );
}

fn print_gpdiag(label: &str, name: &str, m: &Measure, info: &GpdiagInfo) {
    print_measure(label, name, m);
    let opt_ms = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0} ms"));
    println!(
        "    pid {}: peak VmRSS sampled {} MiB, VmHWM {} MiB; queued {}, worker {} s, seen finished {} later ({} polls)",
        info.pid,
        m.rss_mib.map_or("?".into(), |v| format!("{v:.1}")),
        m.hwm_mib.map_or("?".into(), |v| format!("{v:.1}")),
        opt_ms(info.queued_ms),
        info.worker_seconds
            .map_or("?".into(), |v| format!("{v:.2}")),
        opt_ms(info.seen_ms),
        info.polls,
    );
}

fn print_medians(o: &CountOutcome) {
    let g = medians(&o.gpdiag);
    let c = medians(&o.copy);
    println!("  medians of {} run(s):", o.gpdiag.len());
    print_measure("     ", "gpdiag", &g);
    print_measure("     ", "COPY", &c);
    println!(
        "        gpdiag peak VmRSS sampled {:.1} MiB, VmHWM {:.1} MiB (max over runs: {:.1} / {:.1})",
        g.rss_mib.unwrap_or(f64::NAN),
        g.hwm_mib.unwrap_or(f64::NAN),
        max(o.gpdiag.iter().filter_map(|m| m.rss_mib)),
        max(o.gpdiag.iter().filter_map(|m| m.hwm_mib)),
    );
}

/// Field by field medians.
fn medians(runs: &[Measure]) -> Measure {
    let rows = runs.first().map_or(0, |m| m.rows);
    Measure {
        seconds: median(runs.iter().map(|m| m.seconds)),
        rows,
        bytes: median(runs.iter().map(|m| m.bytes as f64)) as u64,
        cpu: optional_median(runs.iter().map(|m| m.cpu)),
        rss_mib: optional_median(runs.iter().map(|m| m.rss_mib)),
        hwm_mib: optional_median(runs.iter().map(|m| m.hwm_mib)),
        worker_seconds: optional_median(runs.iter().map(|m| m.worker_seconds)),
    }
}

fn optional_median(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let values: Vec<f64> = values.flatten().collect();
    (!values.is_empty()).then(|| median(values.into_iter()))
}

fn max(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::NAN, f64::max)
}

fn summary(outcomes: &[CountOutcome]) {
    println!("\nsummary (medians)");
    println!(
        "  {:>10} {:<20} {:>8} {:>11} {:>8} {:>9} {:>10} {:>9} {:>15}",
        "rows",
        "side",
        "seconds",
        "rows/s",
        "MB/s",
        "file MB",
        "peak RSS",
        "VmHWM",
        "worker rows/s†"
    );
    for o in outcomes {
        let g = medians(&o.gpdiag);
        let c = medians(&o.copy);
        let line = |side: &str, m: &Measure| {
            println!(
                "  {:>10} {side:<20} {:>8.2} {:>11.0} {:>8.1} {:>9.1} {:>10} {:>9} {:>15}",
                thousands(o.count),
                m.seconds,
                m.rows_per_second(),
                m.mb_per_second(),
                m.bytes as f64 / 1e6,
                m.rss_mib.map_or("-".to_owned(), |v| format!("{v:.1} MiB")),
                m.hwm_mib.map_or("-".to_owned(), |v| format!("{v:.1} MiB")),
                m.worker_seconds
                    .map_or("-".to_owned(), |w| format!("{:.0}", m.rows as f64 / w)),
            );
        };
        line("gpdiag (SQLite)", &g);
        line("COPY (PostgreSQL)", &c);
        if let Some(p) = &o.gpdiag_postgres {
            line("gpdiag (PostgreSQL)*", p);
        }
        let ratio = g.rows_per_second() / c.rows_per_second();
        println!(
            "  {:>10} gpdiag/COPY rows/s: {ratio:.3} (bar >= {RATIO_BAR:.1}): {}",
            thousands(o.count),
            verdict(ratio >= RATIO_BAR)
        );
        // The high-water mark is the true peak; the samples can only miss a spike.
        let peak = max(o
            .gpdiag
            .iter()
            .filter_map(|m| m.hwm_mib.into_iter().chain(m.rss_mib).reduce(f64::max)));
        if o.count >= RSS_BAR_ROWS {
            println!(
                "  {:>10} gpdiag peak RSS (largest VmHWM of the runs): {peak:.1} MiB (bar <= {RSS_BAR_MIB:.0} MiB): {}",
                thousands(o.count),
                verdict(peak <= RSS_BAR_MIB)
            );
        } else {
            println!(
                "  {:>10} gpdiag peak RSS (largest VmHWM of the runs): {peak:.1} MiB (the {RSS_BAR_MIB:.0} MiB bar is for {} rows)",
                thousands(o.count),
                thousands(RSS_BAR_ROWS)
            );
        }
    }
    if outcomes.iter().any(|o| o.gpdiag_postgres.is_some()) {
        println!("  * one run, no bar");
    }
    println!(
        "  † rows over the worker's own time (its log, \"export started\" to \"export finished\"), without the wait for a worker to pick the task up and for DescribeDownloadRecords to show it finished; no bar"
    );
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals_double_quotes() {
        assert_eq!(sql_literal("a'b"), "'a''b'");
    }

    #[test]
    fn copy_statement_names_the_window_and_file() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let sql = copy_statement(
            &ExportCall {
                instance: "gp-x",
                start,
                end: start + Span::days(1),
            },
            Path::new("/tmp/x.csv"),
        );
        assert!(sql.contains("instance = 'gp-x'"), "{sql}");
        assert!(sql.contains("start_time >= '2026-01-01T00:00:00+00:00'::timestamptz"));
        assert!(
            sql.ends_with("TO '/tmp/x.csv' WITH (FORMAT csv, HEADER)"),
            "{sql}"
        );
    }
}
