//! `gpdiag-bench collect`: log ingestion end to end (parse and store into SQLite, through the
//! real `gpdiag collect --once`) against pgBadger on the same files.
//!
//! The input is made deterministically from the PostgreSQL 15 fixtures: every record of
//! `csvlog_sample.csv` and `jsonlog_sample.json`, copied over and over with its sessions
//! renamed and its log time shifted by the same 256 s per copy, until the csvlog reaches the
//! asked size (300 MB by default); the jsonlog holds the same records. Then, alternating,
//! several times each and per format: gpdiag on a fresh SQLite store, and `pgbadger -j 1` on
//! the same file. Each run is timed from start to exit, with the process's resident memory
//! sampled every 20 ms. Medians are quoted with the bars: gpdiag at least 10× pgBadger's MB/s,
//! and at most 200 MiB peak RSS.

use crate::records::thousands;
use crate::rss::{RssSampler, RSS_SAMPLE};
use crate::{median, verdict};
use anyhow::{bail, ensure, Context};
use chrono::{Duration as Span, NaiveDateTime};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const RATIO_BAR: f64 = 10.0;
const RSS_BAR_MIB: f64 = 200.0;
/// Every fixture session ID starts with these hex digits (the backend start epoch's top).
const SESSION_PREFIX: &str = "6b1312";
/// Each copy's sessions start this much later (one step of the session ID's prefix).
const COPY_SHIFT_SECONDS: i64 = 256;
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

#[derive(clap::Args)]
pub struct CollectArgs {
    /// The gpdiag binary (build it with --release).
    #[arg(long)]
    gpdiag: PathBuf,
    /// The pgBadger to compare with.
    #[arg(long, default_value = "pgbadger")]
    pgbadger: PathBuf,
    /// Where the PostgreSQL 15 fixtures are.
    #[arg(long, default_value = "../shared/fixtures/postgresql-15")]
    fixtures: PathBuf,
    /// Work directory for the generated logs, stores and reports.
    #[arg(long, default_value = "/tmp/gpdiag-bench-collect")]
    dir: PathBuf,
    /// Size of the generated csvlog, in MB (10^6 bytes).
    #[arg(long, default_value_t = 300)]
    mb: u64,
    /// Runs per tool and format, alternating; medians are quoted.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// Smoke check: 20 MB, one repetition.
    #[arg(long)]
    quick: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Csvlog,
    Jsonlog,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csvlog => "csvlog",
            Format::Jsonlog => "jsonlog",
        }
    }
    fn extension(self) -> &'static str {
        match self {
            Format::Csvlog => "csv",
            Format::Jsonlog => "json",
        }
    }
    /// pgBadger's `-f` value.
    fn pgbadger_format(self) -> &'static str {
        match self {
            Format::Csvlog => "csv",
            Format::Jsonlog => "jsonlog",
        }
    }
}

struct Run {
    seconds: f64,
    rss_mib: f64,
    records: Option<u64>,
}

pub fn run(mut args: CollectArgs) -> anyhow::Result<()> {
    if args.quick {
        args.mb = 20;
        args.repetitions = 1;
    }
    ensure!(args.repetitions > 0, "--repetitions must be at least 1");
    std::fs::create_dir_all(&args.dir)?;
    let (csv, json) = generate(&args)?;
    println!(
        "gpdiag-bench collect: {} MB csvlog, same records as jsonlog",
        args.mb
    );
    println!(
        "  gpdiag: `gpdiag collect --once` into a fresh SQLite store; pgBadger: `pgbadger -j 1 -f <format> -o report.html`; each timed start to exit, VmRSS sampled every {} ms",
        RSS_SAMPLE.as_millis()
    );
    let mut verdicts = Vec::new();
    for (format, file) in [(Format::Csvlog, &csv), (Format::Jsonlog, &json)] {
        let bytes = std::fs::metadata(file)?.len();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for rep in 0..args.repetitions {
            ours.push(run_gpdiag(&args, format, file, rep)?);
            theirs.push(run_pgbadger(&args, format, file)?);
        }
        let records = ours[0].records.unwrap_or(0);
        ensure!(
            ours.iter().all(|r| r.records == Some(records)),
            "gpdiag stored different record counts across runs"
        );
        let mb = bytes as f64 / 1e6;
        let show = |who: &str, runs: &[Run]| {
            let seconds = median(runs.iter().map(|r| r.seconds));
            let rss = runs.iter().map(|r| r.rss_mib).fold(0.0, f64::max);
            println!(
                "  {:<8} {:<8} {:>7.1} MB in {:>7.2} s (median of {}): {:>7.1} MB/s, {:>10} records/s, peak RSS {:>6.1} MiB",
                format.name(),
                who,
                mb,
                seconds,
                runs.len(),
                mb / seconds,
                thousands((records as f64 / seconds) as u64),
                rss
            );
            (mb / seconds, rss)
        };
        let (our_rate, our_rss) = show("gpdiag", &ours);
        let (their_rate, _) = show("pgBadger", &theirs);
        let ratio = our_rate / their_rate;
        println!(
            "  {:<8} ratio gpdiag/pgBadger MB/s: {ratio:.1}× (bar {RATIO_BAR}×): {}; peak RSS {our_rss:.1} MiB (bar {RSS_BAR_MIB} MiB): {}",
            format.name(),
            verdict(ratio >= RATIO_BAR),
            verdict(our_rss <= RSS_BAR_MIB)
        );
        println!(
            "  {:<8} records stored: {}",
            format.name(),
            thousands(records)
        );
        verdicts.push(ratio >= RATIO_BAR && our_rss <= RSS_BAR_MIB);
    }
    println!("verdict: {}", verdict(verdicts.iter().all(|v| *v)));
    Ok(())
}

/// Writes (or reuses) the csvlog and jsonlog of `args.mb` MB.
fn generate(args: &CollectArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    let csv_out = args.dir.join(format!("logs-csv-{}mb", args.mb));
    let json_out = args.dir.join(format!("logs-json-{}mb", args.mb));
    let csv_file = csv_out.join("postgresql.csv");
    let json_file = json_out.join("postgresql.json");
    let done = args.dir.join(format!("generated-{}mb", args.mb));
    if done.exists() && csv_file.exists() && json_file.exists() {
        return Ok((csv_file, json_file));
    }
    let csv_records = csv_records(
        &std::fs::read(args.fixtures.join("csvlog_sample.csv"))
            .with_context(|| format!("cannot read the fixtures in {}", args.fixtures.display()))?,
    )?;
    let json_text = std::fs::read_to_string(args.fixtures.join("jsonlog_sample.json"))?;
    let json_records: Vec<&str> = json_text.lines().filter(|l| !l.is_empty()).collect();
    ensure!(
        csv_records.len() == json_records.len(),
        "the csvlog fixture has {} records, the jsonlog fixture {}",
        csv_records.len(),
        json_records.len()
    );
    for dir in [&csv_out, &json_out] {
        std::fs::create_dir_all(dir)?;
    }
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_file)?);
    let mut json = std::io::BufWriter::new(std::fs::File::create(&json_file)?);
    let target = args.mb * 1_000_000;
    let (mut written, mut copy) = (0u64, 0i64);
    while written < target {
        for (c, j) in csv_records.iter().zip(&json_records) {
            let c = shift(c, copy, 0)?;
            written += c.len() as u64;
            csv.write_all(c.as_bytes())?;
            let j = shift(
                j,
                copy,
                j.find("\"timestamp\":\"").map(|i| i + 13).unwrap_or(0),
            )?;
            json.write_all(j.as_bytes())?;
            json.write_all(b"\n")?;
        }
        copy += 1;
    }
    csv.flush()?;
    json.flush()?;
    std::fs::write(&done, b"")?;
    Ok((csv_file, json_file))
}

/// The fixture's csvlog records, each with its line end, found by a real CSV reader.
fn csv_records(bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut starts = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let start = reader.position().byte() as usize;
        if !reader.read_byte_record(&mut record)? {
            break;
        }
        starts.push(start);
    }
    starts.push(bytes.len());
    Ok(starts
        .windows(2)
        .map(|w| String::from_utf8_lossy(&bytes[w[0]..w[1]]).into_owned())
        .collect())
}

/// One record of copy `copy`: its sessions renamed and the log time at `at` moved later.
fn shift(record: &str, copy: i64, at: usize) -> anyhow::Result<String> {
    let prefix = format!("{:06x}", i64::from_str_radix(SESSION_PREFIX, 16)? + copy);
    let mut out = record.replace(SESSION_PREFIX, &prefix);
    let stamp = out
        .get(at..at + 23)
        .context("a record does not start with its log time")?;
    let time = NaiveDateTime::parse_from_str(stamp, TIME_FORMAT)
        .with_context(|| format!("bad log time {stamp:?}"))?
        + Span::seconds(copy * COPY_SHIFT_SECONDS);
    out.replace_range(at..at + 23, &time.format(TIME_FORMAT).to_string());
    Ok(out)
}

fn run_gpdiag(args: &CollectArgs, format: Format, file: &Path, rep: usize) -> anyhow::Result<Run> {
    let work = args.dir.join(format!("gpdiag-{}-{rep}", format.name()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let config = work.join("gpdiag.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nurl = \"sqlite://{}\"\n\n[[accounts]]\nname = \"bench\"\naccess_key_id = \"LTAIbenchcollect01\"\naccess_key_secret = \"bench-secret\"\n\n[[instances]]\nid = \"gp-bench-logs\"\naccount = \"bench\"\ncore_version = \"6.3.10.1\"\nmode = \"StorageElastic\"\n\n[instances.collect]\nlog_dir = \"{}\"\nlog_format = \"{}\"\n",
            work.join("gpdiag.db").display(),
            file.parent().context("no log directory")?.display(),
            format.name()
        ),
    )?;
    let mut command = Command::new(&args.gpdiag);
    command
        .args(["collect", "--once", "--config"])
        .arg(&config)
        .env("GPDIAG_LOG", "warn");
    let (run, stdout) = timed(command)?;
    // "gp-bench-logs: 1 files, N bytes read, M records, 0 unreadable log records skipped"
    let records = stdout
        .split(", ")
        .find_map(|part| part.strip_suffix(" records"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("gpdiag said: {stdout}"))?;
    ensure!(
        stdout.contains(" 0 unreadable"),
        "gpdiag skipped records of the generated log: {stdout}"
    );
    Ok(Run {
        records: Some(records),
        ..run
    })
}

fn run_pgbadger(args: &CollectArgs, format: Format, file: &Path) -> anyhow::Result<Run> {
    let report = args
        .dir
        .join(format!("pgbadger-{}.html", format.extension()));
    let mut command = Command::new(&args.pgbadger);
    command
        .args(["-j", "1", "-q", "-f", format.pgbadger_format(), "-o"])
        .arg(&report)
        .arg(file);
    let (run, _) = timed(command)?;
    ensure!(report.exists(), "pgBadger wrote no report");
    Ok(run)
}

/// Runs a command to completion, timing it and sampling its resident memory; returns its
/// standard output.
fn timed(mut command: Command) -> anyhow::Result<(Run, String)> {
    let started = Instant::now();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let sampler = RssSampler::start(child.id());
    let output = child.wait_with_output()?;
    let seconds = started.elapsed().as_secs_f64();
    let rss_kib = sampler.stop().unwrap_or(0);
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((
        Run {
            seconds,
            rss_mib: rss_kib as f64 / 1024.0,
            records: None,
        },
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_rename_sessions_and_shift_times() {
        let line = "2026-12-04 19:21:24.725 UTC,,,6275,\"127.0.0.1:38202\",6b1312b4.1883,1,\"\",2026-12-04 19:21:24 UTC,,0,LOG\n";
        let third = shift(line, 2, 0).unwrap();
        assert!(third.starts_with("2026-12-04 19:29:56.725 UTC,"), "{third}");
        assert!(third.contains(",6b1314b4.1883,"), "{third}");
        let json = r#"{"timestamp":"2026-12-04 19:21:24.725 UTC","session_id":"6b1312b4.1883"}"#;
        let moved = shift(json, 1, 14).unwrap();
        assert_eq!(
            moved,
            r#"{"timestamp":"2026-12-04 19:25:40.725 UTC","session_id":"6b1313b4.1883"}"#
        );
    }

    #[test]
    fn csv_records_keep_multi_line_fields_whole() {
        let text = b"a,\"x\ny\",1\nb,\"z\",2\n";
        let records = csv_records(text).unwrap();
        assert_eq!(records, vec!["a,\"x\ny\",1\n", "b,\"z\",2\n"]);
    }
}
