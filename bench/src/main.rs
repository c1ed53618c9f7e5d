//! `gpdiag-bench`: signed API load against the real gpdiag release binary and a bare-axum
//! baseline (throughput and latency, medians of alternating runs), then the precision of the
//! per-account throttle under an open-loop overload (`run`, via `scripts/bench-api`); bulk
//! insert and search over millions of generated query records on each store (`records`, via
//! `scripts/bench-records`); exports through the real pipeline against PostgreSQL's COPY
//! (`exports`, via `scripts/bench-exports`); and the record generator itself (`generate`).
//! Benchmarks, not tests.

mod client;
mod collect;
mod exports;
mod load;
mod records;
mod rss;
mod servers;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use client::{check_records, Account, RequestFactory, Signature};
use gpdiag_bench::generate;
use load::{ClosedLoopResult, OpenLoopResult};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// gpdiag must reach this share of the baseline's requests per second.
const THROUGHPUT_BAR: f64 = 0.35;

/// High enough that no account of the throughput phase is ever throttled.
const UNTHROTTLED_CALLS_PER_SECOND: u32 = 1_000_000;

/// The product's default `[limits] calls_per_second`, which the throttling phase leaves in place.
const DEFAULT_CALLS_PER_SECOND: f64 = 1000.0;

/// The accepted rate must stay within this many percent of `DEFAULT_CALLS_PER_SECOND`.
const THROTTLE_BAR_PERCENT: f64 = 1.0;

#[derive(Parser)]
#[command(
    name = "gpdiag-bench",
    about = "Benchmarks of gpdiag: signed API load against a bare-axum baseline and throttling precision (run), bulk insert and search over generated records (records), exports against COPY (exports), and the record generator (generate)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole benchmark against a gpdiag binary.
    #[command(after_help = "Example:\n  gpdiag-bench run --gpdiag target/release/gpdiag --quick")]
    Run(RunArgs),
    /// Serve the bare-axum baseline; `run` starts this itself and reads the address it prints.
    BaselineServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Bulk-insert generated records into each store, then time DescribeDiagnosisRecords
    /// searches through gpdiag on it.
    #[command(
        after_help = "Example:\n  gpdiag-bench records --gpdiag target/release/gpdiag --quick"
    )]
    Records(records::RecordsArgs),
    /// Export generated records through the real pipeline (DownloadDiagnosisRecords to
    /// file://) and time PostgreSQL's COPY TO a file on the same rows.
    #[command(
        after_help = "Example:\n  gpdiag-bench exports --gpdiag target/release/gpdiag --quick"
    )]
    Exports(exports::ExportsArgs),
    /// Write generated query records as JSON lines, the format `gpdiag records import` reads.
    #[command(
        after_help = "Example:\n  gpdiag-bench generate --count 100000 --seed 7 > records.jsonl\n  \
gpdiag records import --instance gp-bench0000 records.jsonl"
    )]
    Generate(GenerateArgs),
    /// Ingest a generated PostgreSQL 15 csvlog and jsonlog with `gpdiag collect --once` and
    /// time pgBadger on the same files.
    #[command(
        after_help = "Example:\n  gpdiag-bench collect --gpdiag target/release/gpdiag --quick"
    )]
    Collect(collect::CollectArgs),
}

#[derive(Args)]
struct GenerateArgs {
    /// How many records.
    #[arg(long)]
    count: u64,
    /// The same seed (and settings) always gives the same records.
    #[arg(long, default_value_t = generate::DEFAULT_SEED)]
    seed: u64,
    /// Name this instance in every line, so an import into another instance is refused;
    /// without it the lines name none and import into whichever instance is given.
    #[arg(long)]
    instance: Option<String>,
    /// Days the start times span.
    #[arg(long, default_value_t = generate::DEFAULT_DAYS)]
    days: u32,
    /// The first start time (RFC 3339).
    #[arg(long, default_value = generate::DEFAULT_START)]
    start: String,
    /// Write here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// The gpdiag binary to start (build it with --release).
    #[arg(long)]
    gpdiag: PathBuf,
    /// Concurrent keep-alive connections of the throughput phases.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds measured per throughput run and for the throttling phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured load before each throughput run.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Throughput runs per server, alternating gpdiag and baseline; medians are quoted.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// Accounts the throughput phase spreads its calls over, round-robin.
    #[arg(long, default_value_t = 4)]
    accounts: usize,
    /// How requests are signed.
    #[arg(long, value_enum, default_value_t = Signature::Acs3)]
    signature: Signature,
    /// Requests per second offered to one account in the throttling phase.
    #[arg(long, default_value_t = 5000)]
    offered_rate: u32,
    /// Connections of the throttling phase; enough that one is always free at its send time.
    #[arg(long, default_value_t = 64)]
    throttle_connections: usize,
    /// Smoke check: 2-second phases, 1-second warm-up, one repetition.
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BaselineServer { listen } => servers::run_baseline(&listen).await,
        Command::Run(args) => {
            // Dropping the run on Ctrl-C drops the server processes, which kills them.
            tokio::select! {
                result = run(args) => result,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            }
        }
        Command::Records(args) => {
            // Dropping the run also stops the servers and the PostgreSQL cluster.
            tokio::select! {
                result = records::run(args) => result,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            }
        }
        Command::Exports(args) => {
            // Dropping the run also stops the servers and the PostgreSQL cluster.
            tokio::select! {
                result = exports::run(args) => result,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            }
        }
        Command::Generate(args) => generate_records(args),
        Command::Collect(args) => collect::run(args),
    }
}

fn generate_records(args: GenerateArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let start = chrono::DateTime::parse_from_rfc3339(&args.start)
        .with_context(|| format!("--start {:?} is not RFC 3339", args.start))?
        .with_timezone(&chrono::Utc);
    if args.days == 0 {
        bail!("--days must be at least 1");
    }
    let settings = generate::Settings {
        seed: args.seed,
        count: args.count,
        instance: args
            .instance
            .clone()
            .unwrap_or_else(|| generate::DEFAULT_INSTANCE.into()),
        start,
        span: chrono::Duration::days(i64::from(args.days)),
    };
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, sink);
    let written = (|| -> std::io::Result<()> {
        for record in generate::Generator::new(settings) {
            generate::write_json_line(&mut out, &record, args.instance.is_some())?;
        }
        out.flush()
    })();
    match written {
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the records"),
    }
}

struct Settings {
    connections: usize,
    duration: Duration,
    warmup: Duration,
    repetitions: usize,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (duration, warmup, repetitions) = if args.quick {
        (2.0, 1.0, 1)
    } else {
        (args.duration, args.warmup, args.repetitions)
    };
    if !(duration > 0.0 && warmup >= 0.0) || repetitions == 0 {
        bail!("--duration must be positive, --warmup not negative, --repetitions at least 1");
    }
    if args.connections == 0 || args.throttle_connections == 0 || args.accounts == 0 {
        bail!("--connections, --throttle-connections and --accounts must be at least 1");
    }
    if args.offered_rate == 0 {
        bail!("--offered-rate must be at least 1");
    }
    let binary = args
        .gpdiag
        .canonicalize()
        .with_context(|| format!("gpdiag binary {} not found", args.gpdiag.display()))?;
    let settings = Settings {
        connections: args.connections,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        repetitions,
    };

    println!(
        "gpdiag API benchmark{}",
        if args.quick { " (quick)" } else { "" }
    );
    println!(
        "  signature {}, action {}, {} connections, {} accounts, warm-up {:.1} s, {:.1} s per run, {} repetition(s)",
        args.signature.describe(),
        client::ACTION,
        settings.connections,
        args.accounts,
        warmup,
        duration,
        settings.repetitions,
    );
    println!("  gpdiag binary {}", binary.display());
    println!(
        "  cores available: {}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let mut problems = Vec::new();
    let accounts: Vec<Account> = (0..args.accounts).map(Account::generate).collect();
    let throughput = throughput_phases(&binary, &accounts, args.signature, &settings).await?;
    problems.extend(throughput);

    let throttling = throttling_phase(
        &binary,
        args.signature,
        args.offered_rate,
        args.throttle_connections,
        settings.duration,
        args.quick,
    )
    .await?;
    problems.extend(throttling);

    if !problems.is_empty() {
        bail!(
            "the run is not valid, its numbers mean nothing:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Phases 1 and 2: gpdiag and the baseline under the same closed-loop load, alternating.
/// Returns what made the run invalid, if anything.
async fn throughput_phases(
    binary: &std::path::Path,
    accounts: &[Account],
    signature: Signature,
    settings: &Settings,
) -> anyhow::Result<Vec<String>> {
    const NAMES: [&str; 2] = ["gpdiag", "baseline"];
    println!(
        "\nthroughput: gpdiag (calls_per_second = {UNTHROTTLED_CALLS_PER_SECOND}) vs bare axum ({}-byte JSON), each a separate process started afresh for every run",
        servers::BASELINE_BODY.len(),
    );
    let mut runs: [Vec<ClosedLoopResult>; 2] = [Vec::new(), Vec::new()];
    let mut problems = Vec::new();
    for repetition in 1..=settings.repetitions {
        for (i, name) in NAMES.into_iter().enumerate() {
            // A fresh process per run: gpdiag remembers every nonce for about 15 minutes, so a
            // long-lived server would carry the earlier runs' replay memory (and, at these
            // rates, fill its default capacity) into the later ones.
            let server = if i == 0 {
                servers::start_gpdiag(binary, accounts, Some(UNTHROTTLED_CALLS_PER_SECOND)).await?
            } else {
                servers::start_baseline().await?
            };
            let factory = Arc::new(RequestFactory::new(
                server.addr,
                accounts.to_vec(),
                signature,
            ));
            for n in 0..factory.accounts() {
                check_records(server.addr, &factory, n).await?;
            }
            let result = load::closed_loop(
                server.addr,
                factory,
                settings.connections,
                settings.warmup,
                settings.duration,
            )
            .await?;
            server.stop().await?;
            println!(
                "  run {repetition}/{} {name:<8} {:>8} requests {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  non-200 {}  errors {}",
                settings.repetitions,
                result.ok,
                result.requests_per_second(),
                ms(result.latency_us.percentile(50.0)),
                ms(result.latency_us.percentile(99.0)),
                result.non_ok,
                result.transport_errors,
            );
            if result.non_ok > 0 || result.transport_errors > 0 {
                let first = result.first_error.as_deref().unwrap_or("(none kept)");
                println!("    first error: {first}");
                let (non_ok, errors) = (result.non_ok, result.transport_errors);
                problems.push(format!(
                    "{name} run {repetition}: {non_ok} non-200, {errors} connection errors; first: {first}"
                ));
            }
            runs[i].push(result);
        }
    }
    println!("  sanity: before every run, one signed call per account answered 200 with Records");

    println!("  medians of {} run(s):", settings.repetitions);
    let mut rates = [0.0; 2];
    for (i, name) in NAMES.into_iter().enumerate() {
        let rps = median(runs[i].iter().map(ClosedLoopResult::requests_per_second));
        let p50 = median(runs[i].iter().map(|r| ms(r.latency_us.percentile(50.0))));
        let p99 = median(runs[i].iter().map(|r| ms(r.latency_us.percentile(99.0))));
        println!("    {name:<8} {rps:>9.0} req/s  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms");
        rates[i] = rps;
    }
    let ratio = rates[0] / rates[1];
    println!(
        "  gpdiag/baseline req/s: {ratio:.3} (bar >= {THROUGHPUT_BAR}): {}",
        verdict(ratio >= THROUGHPUT_BAR)
    );
    Ok(problems)
}

/// Phase 3: one account of a fresh gpdiag with the default limit, offered more than it may
/// make. Returns what made the run invalid, if anything.
async fn throttling_phase(
    binary: &std::path::Path,
    signature: Signature,
    offered_rate: u32,
    connections: usize,
    duration: Duration,
    quick: bool,
) -> anyhow::Result<Vec<String>> {
    let account = Account::generate(0);
    let gpdiag = servers::start_gpdiag(binary, std::slice::from_ref(&account), None).await?;
    let factory = Arc::new(RequestFactory::new(gpdiag.addr, vec![account], signature));
    check_records(gpdiag.addr, &factory, 0).await?;
    // Let the sanity call's token come back so the phase starts with the full default burst.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "\nthrottling: fresh gpdiag (pid {}, {}) with the default calls_per_second and burst, one account, open loop",
        gpdiag.pid(),
        gpdiag.addr
    );
    let result = load::open_loop(gpdiag.addr, factory, connections, offered_rate, duration).await?;
    gpdiag.stop().await?;
    Ok(report_throttling(
        &result,
        offered_rate,
        connections,
        duration,
        quick,
    ))
}

fn report_throttling(
    r: &OpenLoopResult,
    offered_rate: u32,
    connections: usize,
    duration: Duration,
    quick: bool,
) -> Vec<String> {
    let span = r.send_span.as_secs_f64();
    println!(
        "  offered   {offered_rate} req/s for {:.1} s over {connections} connections: scheduled {}, sent {} ({:.1} req/s measured)",
        duration.as_secs_f64(),
        r.scheduled,
        r.sent,
        r.offered_per_second(),
    );
    println!(
        "  send lateness against the schedule: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(r.lateness_us.percentile(50.0)),
        ms(r.lateness_us.percentile(99.0)),
        ms(r.lateness_us.max()),
    );
    println!(
        "  accepted  {} (200) = {:.1} req/s over {span:.4} s from first to last send",
        r.accepted,
        r.accepted_per_second()
    );
    println!(
        "  throttled {} ({}; x-acs-retry-after on {}: min {} ms, median {} ms, max {} ms)",
        r.throttled,
        load::THROTTLING_USER,
        r.retry_after_ms.len(),
        r.retry_after_ms.min(),
        r.retry_after_ms.percentile(50.0),
        r.retry_after_ms.max(),
    );
    println!(
        "  other     {} answers, {} connection errors",
        r.other, r.transport_errors
    );
    let deviation = (r.accepted_per_second() / DEFAULT_CALLS_PER_SECOND - 1.0) * 100.0;
    println!(
        "  deviation from {DEFAULT_CALLS_PER_SECOND}/s: {deviation:+.2}% (bar within ±{THROTTLE_BAR_PERCENT}%): {}",
        verdict(deviation.abs() <= THROTTLE_BAR_PERCENT)
    );
    if quick {
        // The default burst (calls_per_second / 20) adds 50 calls to any window; over 2 s that
        // alone is +2.5%, so the bar is only meaningful for the full 10-second phase.
        println!(
            "  (quick run: the ±{THROTTLE_BAR_PERCENT}% bar is meant for the full 10 s phase)"
        );
    }
    let mut problems = Vec::new();
    if r.other > 0 || r.transport_errors > 0 {
        let first = r.first_error.as_deref().unwrap_or("(none kept)");
        println!("    first error: {first}");
        problems.push(format!(
            "throttling: {} unexpected answers, {} connection errors; first: {first}",
            r.other, r.transport_errors
        ));
    }
    if r.sent != r.scheduled {
        problems.push(format!(
            "throttling: sent {} of {} scheduled requests",
            r.sent, r.scheduled
        ));
    }
    problems
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert_eq!(median(std::iter::empty()), 0.0);
    }
}
