//! `gpdiag-bench records`: millions of generated query records bulk-inserted through
//! `Store::upsert_records` (the path `gpdiag records import` takes, in its batch size), then
//! `DescribeDiagnosisRecords` searches through the real gpdiag release binary on that store,
//! signed by the project's client. SQLite first, then PostgreSQL on a private cluster started
//! with `scripts/pg-cluster` when this build's store supports it.
//!
//! Every answer is checked: HTTP 200, a page of `min(30, TotalCount)` items, and a `TotalCount`
//! equal to what the documented semantics count over the same generated records.

use crate::client::{Account, Connection, RequestFactory, Signature};
use crate::load::Samples;
use crate::servers;
use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Duration as Span, Utc};
use gpdiag_bench::generate::{self, Generator, Settings, DATABASES, KEYWORDS};
use gpdiag_core::record::contains_case_insensitive;
use gpdiag_core::{QueryRecord, TimeWindow};
use gpdiag_ingest::import::BATCH;
use gpdiag_store::{Store, StoreError};
use hyper::StatusCode;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SQLite must bulk-insert at least this many rows per second.
const INSERT_BAR: f64 = 200_000.0;
/// The median search on SQLite must answer within this many milliseconds.
const P50_BAR_MS: f64 = 100.0;
/// `--quick` inserts this many records.
const QUICK_COUNT: u64 = 200_000;
/// At least this share of the searches must find something, or the keywords and windows chosen
/// do not exercise the store.
const MIN_FOUND_SHARE: f64 = 0.5;
/// High enough that back-to-back searches are never throttled.
const UNTHROTTLED_CALLS_PER_SECOND: u32 = 1_000_000;
/// The database `scripts/pg-cluster`'s server gets for the benchmark.
const PG_DATABASE: &str = "gpdiag_bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
    All,
}

#[derive(clap::Args)]
pub struct RecordsArgs {
    /// The gpdiag binary to start (build it with --release).
    #[arg(long)]
    gpdiag: PathBuf,
    /// Records to insert.
    #[arg(long, default_value_t = generate::DEFAULT_COUNT)]
    count: u64,
    /// Smoke check: 200,000 records (overrides --count).
    #[arg(long)]
    quick: bool,
    /// Seed of the records and of the searches.
    #[arg(long, default_value_t = generate::DEFAULT_SEED)]
    seed: u64,
    /// Days the records' start times span [default: 30, with --quick 1, so that an hour holds
    /// about as many records as in the full run].
    #[arg(long)]
    days: Option<u32>,
    /// Measured searches per back end, one after another on one keep-alive connection.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Unmeasured searches before them (different windows, same mix).
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Which back ends to measure.
    #[arg(long, value_enum, default_value_t = Backend::All)]
    backend: Backend,
    /// Where the temporary databases go (default: the system temporary directory). 10 million
    /// records take several GB per back end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The script that starts and stops the private PostgreSQL cluster.
    #[arg(long, default_value = "scripts/pg-cluster")]
    pg_cluster: PathBuf,
}

/// What one back end measured; `None` where the phase did not run.
struct Outcome {
    backend: &'static str,
    rows: u64,
    insert_rows_per_second: Option<f64>,
    size_bytes: Option<u64>,
    latency: Option<Latency>,
    note: Option<String>,
}

struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    max_ms: f64,
}

/// One search: the hour, database and keyword asked for, and the total the reference semantics
/// expect.
#[derive(Clone)]
struct Search {
    window: TimeWindow,
    database: &'static str,
    keyword: &'static str,
    expected: u64,
}

impl Search {
    /// The documented semantics (`RecordFilter::matches`) for this search: the instance is the
    /// generator's, the window half-open, the keyword a literal case-insensitive substring.
    fn matches(&self, r: &QueryRecord) -> bool {
        r.database == self.database
            && r.start_time >= self.window.start
            && r.start_time < self.window.end
            && contains_case_insensitive(&r.sql, self.keyword)
    }
}

pub async fn run(args: RecordsArgs) -> anyhow::Result<()> {
    let count = if args.quick { QUICK_COUNT } else { args.count };
    let days = args.days.unwrap_or(if args.quick {
        1
    } else {
        generate::DEFAULT_DAYS
    });
    ensure!(count > 0, "--count must be at least 1");
    ensure!(days > 0, "--days must be at least 1");
    ensure!(args.calls > 0, "--calls must be at least 1");
    let binary = args
        .gpdiag
        .canonicalize()
        .with_context(|| format!("gpdiag binary {} not found", args.gpdiag.display()))?;
    let account = Account::generate(0);
    let settings = Settings {
        seed: args.seed,
        count,
        instance: account.instance_id.clone(),
        span: Span::days(i64::from(days)),
        ..Settings::default()
    };
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };

    println!(
        "gpdiag records benchmark{}",
        if args.quick { " (quick)" } else { "" }
    );
    println!(
        "  {} records (seed {}) over {} days from {}, instance {}, batches of {BATCH} through Store::upsert_records",
        thousands(count),
        settings.seed,
        days,
        settings.start.format("%Y-%m-%d %H:%M UTC"),
        settings.instance,
    );
    println!(
        "  searches: DescribeDiagnosisRecords, 1-hour window + Database + Keyword, page 1 of 30, {} warm-up then {} measured, sequential on one connection, ACS3-signed",
        args.warmup, args.calls
    );
    println!("  gpdiag binary {}", binary.display());
    println!("  temporary files under {}", base.display());
    println!(
        "  cores available: {}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let started = Instant::now();
    let searches = plan_searches(&settings, args.seed, args.warmup + args.calls).await?;
    println!(
        "  expected totals of the {} searches computed from the generator in {:.1} s",
        searches.len(),
        started.elapsed().as_secs_f64()
    );

    let mut problems = Vec::new();
    let mut outcomes = Vec::new();
    let ctx = Ctx {
        binary: &binary,
        account: &account,
        settings: &settings,
        searches: &searches,
        warmup: args.warmup,
        base: &base,
    };
    if matches!(args.backend, Backend::Sqlite | Backend::All) {
        outcomes.push(sqlite(&ctx, &mut problems).await?);
    }
    if matches!(args.backend, Backend::Postgres | Backend::All) {
        outcomes.push(postgres(&ctx, &args.pg_cluster, &mut problems).await?);
    }

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
    settings: &'a Settings,
    searches: &'a [Search],
    warmup: usize,
    base: &'a Path,
}

async fn sqlite(ctx: &Ctx<'_>, problems: &mut Vec<String>) -> anyhow::Result<Outcome> {
    println!("\nSQLite");
    let dir = tempfile::Builder::new()
        .prefix("gpdiag-bench-records-")
        .tempdir_in(ctx.base)
        .with_context(|| format!("cannot create a directory in {}", ctx.base.display()))?;
    let path = dir.path().join("records.db");
    let url = format!("sqlite://{}", path.display());
    println!("  store {url}");
    let store = gpdiag_store::open(&url).await?;
    let rate = insert(store, ctx.settings).await?;
    // The store is closed now, so the write-ahead log is checkpointed into the file.
    let size = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len())
        .sum();
    println!("  database size {}", gigabytes(size));
    let latency = search(ctx, &url, "sqlite", problems).await?;
    Ok(Outcome {
        backend: "sqlite",
        rows: ctx.settings.count,
        insert_rows_per_second: Some(rate),
        size_bytes: Some(size),
        latency: Some(latency),
        note: None,
    })
}

async fn postgres(
    ctx: &Ctx<'_>,
    script: &Path,
    problems: &mut Vec<String>,
) -> anyhow::Result<Outcome> {
    println!("\nPostgreSQL");
    let skipped = |note: String| {
        println!("  skipped: {note}");
        Outcome {
            backend: "postgres",
            rows: 0,
            insert_rows_per_second: None,
            size_bytes: None,
            latency: None,
            note: Some(note),
        }
    };
    // A store that cannot open postgres:// URLs is refused before any cluster is started.
    if let Err(StoreError::Unsupported(_, why)) =
        gpdiag_store::open("postgres://gpdiag@127.0.0.1:1/none").await
    {
        return Ok(skipped(format!("this build's store says: {why}")));
    }
    if !script.exists() {
        return Ok(skipped(format!("{} does not exist", script.display())));
    }
    let cluster = PgCluster::start(script, ctx.base)?;
    println!("  private cluster {} in {}", cluster.url, cluster.dir());
    let admin = pg_connect(&cluster.url).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {PG_DATABASE}"))
        .await
        .context("cannot create the benchmark database")?;
    let url = cluster
        .url
        .rsplit_once('/')
        .map(|(server, _)| format!("{server}/{PG_DATABASE}"))
        .context("the cluster's URL has no database part")?;
    println!("  store {url}");
    let store = gpdiag_store::open(&url).await?;
    let rate = insert(store, ctx.settings).await?;
    let size: i64 = admin
        .query_one("SELECT pg_database_size($1::text)", &[&PG_DATABASE])
        .await?
        .get(0);
    let size = u64::try_from(size).unwrap_or(0);
    println!("  database size {}", gigabytes(size));
    let latency = search(ctx, &url, "postgres", problems).await?;
    drop(admin);
    cluster.stop()?;
    Ok(Outcome {
        backend: "postgres",
        rows: ctx.settings.count,
        insert_rows_per_second: Some(rate),
        size_bytes: Some(size),
        latency: Some(latency),
        note: None,
    })
}

pub(crate) async fn pg_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(async move {
        // An error here surfaces on the next query.
        let _ = connection.await;
    });
    Ok(client)
}

/// Bulk-inserts the generated records: the generator runs on its own thread and hands over
/// batches of `BATCH`; the clock covers everything from the first batch asked for to the last
/// write committed. Closes the store. Returns rows per second.
async fn insert(store: Arc<dyn Store>, settings: &Settings) -> anyhow::Result<f64> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<QueryRecord>>(4);
    let generator_settings = settings.clone();
    let producer = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(BATCH);
        for record in Generator::new(generator_settings) {
            batch.push(record);
            if batch.len() == BATCH
                && tx
                    .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .is_err()
            {
                return cpu_seconds("/proc/thread-self/stat");
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        cpu_seconds("/proc/thread-self/stat")
    });
    let cpu_before = cpu_seconds("/proc/self/stat");
    let total = settings.count;
    let step = (total / 10).max(1);
    let mut next_report = step;
    let (mut written, mut waited) = (0u64, Duration::ZERO);
    let started = Instant::now();
    loop {
        let asked = Instant::now();
        let Some(batch) = rx.recv().await else { break };
        waited += asked.elapsed();
        written += store
            .upsert_records(batch)
            .await
            .context("Store::upsert_records failed")?;
        if written >= next_report && written < total {
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "    {:>12} rows  {:>7.1} s  {:>9.0} rows/s so far",
                thousands(written),
                elapsed,
                written as f64 / elapsed
            );
            next_report += step;
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds("/proc/self/stat")
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    let generator_cpu = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the record generator panicked"))?;
    ensure!(
        written == total,
        "wrote {written} of {total} records; the generator stopped early"
    );
    let closing = Instant::now();
    drop(store);
    let rate = written as f64 / elapsed.as_secs_f64();
    println!(
        "  inserted {} rows in {:.1} s: {rate:.0} rows/s (waited {:.1} s of it for the generator; closing took {:.1} s more)",
        thousands(written),
        elapsed.as_secs_f64(),
        waited.as_secs_f64(),
        closing.elapsed().as_secs_f64(),
    );
    // The machine may be shared: CPU time tells what the insert cost whatever else ran. Only
    // this process counts; a database server's own processes do not.
    if let (Some(cpu), Some(generator)) = (cpu, generator_cpu) {
        let rest = (cpu - generator).max(0.01);
        println!(
            "  CPU of this process: {cpu:.1} s, {generator:.1} s of it generating; the rest (store client, batch copies) {rest:.1} s = {:.0} rows per CPU-second",
            written as f64 / rest
        );
    }
    Ok(rate)
}

/// CPU seconds (user and system) a process or thread has used, from a Linux `/proc/…/stat`
/// file; `None` where there is none.
pub(crate) fn cpu_seconds(stat: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // The fields after the parenthesised command name start with the state (field 3); utime
    // and stime are fields 14 and 15, in clock ticks of 1/100 s.
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The searches, seeded: a random whole hour of the span, a database and a keyword, with the
/// total each must find by the reference semantics over the same records (regenerated on a
/// blocking thread, which takes seconds even for ten million).
async fn plan_searches(settings: &Settings, seed: u64, n: usize) -> anyhow::Result<Vec<Search>> {
    let mut rng = generate::Rng::new(seed ^ 0x5EA7_C4E5);
    let hours = (settings.span.num_hours()).max(1) as u64;
    let mut searches: Vec<Search> = (0..n)
        .map(|_| {
            let start = settings.start + Span::hours(rng.below(hours) as i64);
            Search {
                window: TimeWindow {
                    start,
                    end: start + Span::hours(1),
                },
                database: rng.choose(&DATABASES),
                keyword: rng.choose(&KEYWORDS),
                expected: 0,
            }
        })
        .collect();
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        // Records come in start-time order, so each record only needs the searches of its hour.
        let mut by_hour: std::collections::HashMap<i64, Vec<usize>> = Default::default();
        for (i, s) in searches.iter().enumerate() {
            by_hour
                .entry(s.window.start.timestamp() / 3600)
                .or_default()
                .push(i);
        }
        for record in Generator::new(settings) {
            if let Some(ids) = by_hour.get(&(record.start_time.timestamp() / 3600)) {
                for &i in ids {
                    if searches[i].matches(&record) {
                        searches[i].expected += 1;
                    }
                }
            }
        }
        searches
    })
    .await
    .context("computing the expected totals failed")
}

/// Starts gpdiag on `url` and runs the searches; the first `ctx.warmup` are not measured.
async fn search(
    ctx: &Ctx<'_>,
    url: &str,
    backend: &str,
    problems: &mut Vec<String>,
) -> anyhow::Result<Latency> {
    let server = servers::start_gpdiag_on(
        ctx.binary,
        std::slice::from_ref(ctx.account),
        Some(UNTHROTTLED_CALLS_PER_SECOND),
        Some(url),
    )
    .await?;
    println!(
        "  gpdiag (pid {}, {}) on that store: {} searches",
        server.pid(),
        server.addr,
        ctx.searches.len()
    );
    let factory = RequestFactory::new(server.addr, vec![ctx.account.clone()], Signature::Acs3);
    let mut connection = Connection::open(server.addr).await?;
    let mut latencies = Vec::with_capacity(ctx.searches.len());
    let (mut found, mut wrong, mut failed) = (0usize, 0usize, 0usize);
    let mut first_problem: Option<String> = None;
    for (i, s) in ctx.searches.iter().enumerate() {
        let params: Vec<(String, String)> = [
            ("DBInstanceId", ctx.account.instance_id.as_str()),
            ("Database", s.database),
            ("StartTime", &api_minute(s.window.start)),
            ("EndTime", &api_minute(s.window.end)),
            ("Keyword", s.keyword),
            ("PageNumber", "1"),
            ("PageSize", "30"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let request = factory.build_call(0, "DescribeDiagnosisRecords", &params)?;
        let sent = Instant::now();
        let reply = connection.send(request).await?;
        let took = sent.elapsed();
        if i >= ctx.warmup {
            latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
        let what = format!(
            "{} {} keyword {:?}",
            s.database,
            s.window.start.format("%Y-%m-%dT%H:%MZ"),
            s.keyword
        );
        if reply.status != StatusCode::OK {
            failed += 1;
            first_problem.get_or_insert_with(|| {
                format!(
                    "{what}: HTTP {}: {}",
                    reply.status.as_u16(),
                    reply.body_text()
                )
            });
            continue;
        }
        let body: serde_json::Value = serde_json::from_slice(&reply.body)
            .with_context(|| format!("{what}: not JSON: {}", reply.body_text()))?;
        let total = body.get("TotalCount").and_then(serde_json::Value::as_u64);
        let items = body
            .get("Items")
            .and_then(serde_json::Value::as_array)
            .map(Vec::len);
        let page_ok = matches!((total, items), (Some(t), Some(n)) if n as u64 == t.min(30));
        if total != Some(s.expected) || !page_ok {
            wrong += 1;
            first_problem.get_or_insert_with(|| {
                format!(
                    "{what}: expected TotalCount {} and {} items, got TotalCount {total:?} and {items:?} items",
                    s.expected,
                    s.expected.min(30)
                )
            });
        }
        if total.unwrap_or(0) > 0 {
            found += 1;
        }
    }
    server.stop().await?;

    let samples = Samples::new(latencies);
    let latency = Latency {
        p50_ms: ms(samples.percentile(50.0)),
        p99_ms: ms(samples.percentile(99.0)),
        mean_ms: samples.mean() / 1000.0,
        max_ms: ms(samples.max()),
    };
    let totals = Samples::new(
        ctx.searches
            .iter()
            .map(|s| u32::try_from(s.expected).unwrap_or(u32::MAX))
            .collect(),
    );
    println!(
        "  latency over {} calls: p50 {:.2} ms  p99 {:.2} ms  mean {:.2} ms  max {:.2} ms",
        samples.len(),
        latency.p50_ms,
        latency.p99_ms,
        latency.mean_ms,
        latency.max_ms
    );
    println!(
        "  answers: {} of {} HTTP 200; {} found records (TotalCount min {}, median {}, max {}); {} with a wrong TotalCount or page",
        ctx.searches.len() - failed,
        ctx.searches.len(),
        found,
        totals.min(),
        totals.percentile(50.0),
        totals.max(),
        wrong
    );
    if let Some(first) = &first_problem {
        println!("    first problem: {first}");
    }
    if failed > 0 || wrong > 0 {
        problems.push(format!(
            "{backend}: {failed} non-200 answers, {wrong} wrong totals or pages; first: {}",
            first_problem.as_deref().unwrap_or("(none kept)")
        ));
    }
    if (found as f64) < MIN_FOUND_SHARE * ctx.searches.len() as f64 {
        problems.push(format!(
            "{backend}: only {found} of {} searches found records; the searches do not exercise the store",
            ctx.searches.len()
        ));
    }
    Ok(latency)
}

/// The API's request time format, to the minute.
fn api_minute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

/// A private PostgreSQL cluster in a temporary directory, stopped when dropped (also when the
/// benchmark fails or is interrupted).
pub(crate) struct PgCluster {
    script: PathBuf,
    dir: Option<tempfile::TempDir>,
    pub(crate) url: String,
}

impl PgCluster {
    pub(crate) fn start(script: &Path, base: &Path) -> anyhow::Result<Self> {
        // Directly in the base directory: the server's own user must be able to enter it, and
        // its unix socket path must stay short.
        let dir = tempfile::Builder::new()
            .prefix("gpdiag-pg-")
            .tempdir_in(base)?;
        let script = script
            .canonicalize()
            .with_context(|| format!("{} not found", script.display()))?;
        let mut cluster = Self {
            script,
            dir: Some(dir),
            url: String::new(),
        };
        let output = std::process::Command::new(&cluster.script)
            .arg("start")
            .arg(cluster.dir())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run the pg-cluster script")?;
        ensure!(
            output.status.success(),
            "{} start failed ({})",
            cluster.script.display(),
            output.status
        );
        cluster.url = String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_owned();
        ensure!(
            cluster.url.starts_with("postgres"),
            "pg-cluster printed no URL: {:?}",
            String::from_utf8_lossy(&output.stdout)
        );
        Ok(cluster)
    }

    pub(crate) fn dir(&self) -> String {
        self.dir
            .as_ref()
            .map(|d| d.path().display().to_string())
            .unwrap_or_default()
    }

    /// Stops the cluster and removes its files.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        let Some(dir) = self.dir.take() else {
            return Ok(());
        };
        let status = std::process::Command::new(&self.script)
            .arg("stop")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .context("cannot run the pg-cluster script")?;
        if !status.success() {
            // Keep the files, so whoever looks can still stop it by hand.
            let kept = dir.keep();
            bail!(
                "{} stop {} failed ({status}); its files are kept",
                self.script.display(),
                kept.display()
            );
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            eprintln!("{e:#}");
        }
    }
}

fn summary(outcomes: &[Outcome]) {
    println!("\nsummary");
    println!(
        "  {:<9} {:>12} {:>14} {:>10} {:>10} {:>10} {:>10}  verdicts",
        "backend", "rows", "insert rows/s", "size", "p50 ms", "p99 ms", "mean ms"
    );
    for o in outcomes {
        let dash = || "-".to_owned();
        let verdicts = if o.backend == "sqlite" {
            let insert = o
                .insert_rows_per_second
                .map_or("-", |r| verdict(r >= INSERT_BAR));
            let p50 = o
                .latency
                .as_ref()
                .map_or("-", |l| verdict(l.p50_ms < P50_BAR_MS));
            format!(
                "insert >= {} rows/s: {insert}; p50 < {P50_BAR_MS:.0} ms: {p50}",
                thousands(INSERT_BAR as u64)
            )
        } else {
            o.note.clone().unwrap_or_else(|| "(no bars)".into())
        };
        println!(
            "  {:<9} {:>12} {:>14} {:>10} {:>10} {:>10} {:>10}  {verdicts}",
            o.backend,
            if o.rows > 0 {
                thousands(o.rows)
            } else {
                dash()
            },
            o.insert_rows_per_second
                .map_or_else(dash, |r| thousands(r.round() as u64)),
            o.size_bytes.map_or_else(dash, gigabytes),
            o.latency
                .as_ref()
                .map_or_else(dash, |l| format!("{:.2}", l.p50_ms)),
            o.latency
                .as_ref()
                .map_or_else(dash, |l| format!("{:.2}", l.p99_ms)),
            o.latency
                .as_ref()
                .map_or_else(dash, |l| format!("{:.2}", l.mean_ms)),
        );
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }
}
