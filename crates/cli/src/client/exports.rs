//! `gpdiag export` (DownloadDiagnosisRecords, then optionally wait and download in one go) and
//! `gpdiag exports list|download|cancel` (DescribeDownloadRecords, CancelDownloadTask).
//!
//! Waiting polls DescribeDownloadRecords and shows gpdiag's `RowsDone` extension as it grows;
//! downloading streams the signed `DownloadUrl` into `FILE.part`, checks the byte count against
//! `Content-Length`, and only then renames it, so a file under the final name is always whole.

use super::output::{self, TableOrJson};
use super::progress::Ui;
use super::records::FilterArgs;
use super::{Client, ClientArgs, Exit, Failure, Outcome};
use chrono::Utc;
use clap::{Args, Subcommand};
use gpdiag_wire::api::diagnosis::DescribeDiagnosisRecordsResponse;
use gpdiag_wire::api::downloads::{
    CancelDownloadTaskResponse, DescribeDownloadRecordsResponse, DownloadRecord,
    DownloadStartedResponse,
};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long an export may be missing from the listing before waiting gives up: a freshly
/// started export can take a moment to show on another node behind a load balancer.
const UNLISTED_GRACE: Duration = Duration::from_secs(15);

#[derive(Args, Debug)]
#[command(
    after_help = "Without --wait or --output, prints the DownloadId and returns at once.\n\n\
Examples:\n  \
gpdiag export --instance gp-bp1analytics01 --database sales --start -6h --wait\n  \
gpdiag export --instance gp-bp1analytics01 --database sales --start -1d --top 100 --output top100.csv\n  \
gpdiag export --instance gp-bp1analytics01 --database sales --start 2026-01-02T00:00Z --end 2026-01-03T00:00Z \\\n    \
--min-ms 60000 --lang zh --gzip --output - | zcat | head\n  \
id=$(gpdiag export --instance gp-bp1analytics01 --database sales --start -6h)"
)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Language of the file's header row.
    #[arg(long, value_parser = ["en", "zh", "ja", "zh-tw"], default_value = "en")]
    pub lang: String,
    /// Compress the file with gzip (the name ends in .csv.gz).
    #[arg(long)]
    pub gzip: bool,
    /// Start the file with a UTF-8 byte order mark (for spreadsheet programs).
    #[arg(long)]
    pub bom: bool,
    /// Wait for the export to finish, then download it (to the server's file name unless
    /// --output says otherwise).
    #[arg(long)]
    pub wait: bool,
    /// Where to save the file: a path, a directory (the server's file name inside it), or -
    /// for standard output. Implies --wait.
    #[arg(long, short, value_name = "FILE|-")]
    pub output: Option<PathBuf>,
    /// Milliseconds between status checks while waiting.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    pub poll_ms: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskType {
    /// Exports started by DownloadDiagnosisRecords (gpdiag export).
    #[value(name = "SQL_DIAGNOSE")]
    SqlDiagnose,
    /// Exports started by DownloadSlowSQLRecords.
    #[value(name = "SLOW_SQL")]
    SlowSql,
}

impl TaskType {
    fn as_str(self) -> &'static str {
        match self {
            TaskType::SqlDiagnose => "SQL_DIAGNOSE",
            TaskType::SlowSql => "SLOW_SQL",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ExportsCommand {
    /// List an instance's exports, newest first (DescribeDownloadRecords).
    #[command(
        after_help = "ROWS is gpdiag's RowsDone: rows written so far while running, the file's rows once finished.\n\n\
Examples:\n  \
gpdiag exports list --instance gp-bp1analytics01\n  \
gpdiag exports list --instance gp-bp1analytics01 --type SLOW_SQL --output json"
    )]
    List {
        #[arg(long, value_name = "ID")]
        instance: String,
        /// Which exports.
        #[arg(long = "type", value_enum, ignore_case = true, default_value_t = TaskType::SqlDiagnose)]
        task_type: TaskType,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        output: TableOrJson,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Wait for an export to finish (if it is still running) and download it.
    #[command(after_help = "Examples:\n  \
gpdiag exports download --instance gp-bp1analytics01 12\n  \
gpdiag exports download --instance gp-bp1analytics01 12 --output - > export.csv\n  \
gpdiag exports download --instance gp-bp1analytics01 7 --type SLOW_SQL --output slow/")]
    Download {
        #[arg(long, value_name = "ID")]
        instance: String,
        /// The DownloadId, as `gpdiag export` printed it or `gpdiag exports list` lists it.
        download_id: i64,
        #[arg(long = "type", value_enum, ignore_case = true, default_value_t = TaskType::SqlDiagnose)]
        task_type: TaskType,
        /// Where to save the file: a path, a directory, or - for standard output.
        #[arg(long, short, value_name = "FILE|-")]
        output: Option<PathBuf>,
        #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
        poll_ms: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a running export (gpdiag's CancelDownloadTask); it then lists as failed.
    #[command(after_help = "Example:\n  gpdiag exports cancel --instance gp-bp1analytics01 12")]
    Cancel {
        #[arg(long, value_name = "ID")]
        instance: String,
        /// The DownloadId.
        download_id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run_export(args: ExportArgs) -> Outcome {
    let mut params = args.filter.params(Utc::now())?;
    let client = Client::from_args(&args.client)?;
    let instance = args.filter.instance.clone();
    let target = args.output.as_deref().map(Target::parse);
    if let Some(Target::Stdout) = &target {
        refuse_gzip_to_terminal(args.gzip)?;
    }
    let count_params = params.clone();
    params.push(("Lang".into(), args.lang.clone()));
    if args.gzip {
        params.push(("Gzip".into(), "true".into()));
    }
    if args.bom {
        params.push(("Bom".into(), "true".into()));
    }
    let started: DownloadStartedResponse = client.call("DownloadDiagnosisRecords", &params).await?;
    let id: i64 = started.download_id.trim().parse().map_err(|_| {
        Failure::new(
            Exit::Server,
            format!(
                "DownloadDiagnosisRecords answered the DownloadId {:?}, which is not a number",
                started.download_id
            ),
        )
    })?;
    if !args.wait && target.is_none() {
        output::print_text(&format!("{id}\n"))?;
        client.ui.note(&format!(
            "export {id} started; `gpdiag exports download --instance {instance} {id}` waits for it and saves it"
        ));
        return Ok(());
    }
    client.ui.note(&format!("export {id} started"));
    // How many rows to expect, for a bar with an end; only worth a call when a bar shows.
    let expected = if client.ui.quiet() {
        None
    } else {
        expected_rows(&client, count_params, args.filter.top).await
    };
    let interrupt = Interrupt::listen();
    let record = wait_for_end(
        &client,
        &instance,
        TaskType::SqlDiagnose,
        id,
        expected,
        Duration::from_millis(args.poll_ms.max(50)),
        &interrupt,
    )
    .await?;
    download(
        &client,
        &instance,
        &record,
        target.unwrap_or(Target::ServerName(PathBuf::from("."))),
        &interrupt,
    )
    .await
}

pub async fn run_exports(command: ExportsCommand) -> Outcome {
    match command {
        ExportsCommand::List {
            instance,
            task_type,
            output,
            client,
        } => {
            let client = Client::from_args(&client)?;
            let records = list(&client, &instance, task_type).await?;
            print_list(&client.ui, &records, output)
        }
        ExportsCommand::Download {
            instance,
            download_id,
            task_type,
            output,
            poll_ms,
            client,
        } => {
            let client = Client::from_args(&client)?;
            let target = output.as_deref().map(Target::parse);
            let interrupt = Interrupt::listen();
            let record = wait_for_end(
                &client,
                &instance,
                task_type,
                download_id,
                None,
                Duration::from_millis(poll_ms.max(50)),
                &interrupt,
            )
            .await?;
            if let Some(Target::Stdout) = &target {
                refuse_gzip_to_terminal(record.file_name.ends_with(".gz"))?;
            }
            download(
                &client,
                &instance,
                &record,
                target.unwrap_or(Target::ServerName(PathBuf::from("."))),
                &interrupt,
            )
            .await
        }
        ExportsCommand::Cancel {
            instance,
            download_id,
            client,
        } => {
            let client = Client::from_args(&client)?;
            let id = download_id.to_string();
            let reply: CancelDownloadTaskResponse = client
                .call(
                    "CancelDownloadTask",
                    &super::pairs([
                        ("DBInstanceId", instance.as_str()),
                        ("DownloadId", id.as_str()),
                    ]),
                )
                .await?;
            output::print_text(&format!(
                "Canceled export {} of {} (it now lists as {}).\n",
                reply.download_id, reply.db_instance_id, reply.status
            ))
        }
    }
}

fn refuse_gzip_to_terminal(gzip: bool) -> Outcome {
    if gzip && std::io::stdout().is_terminal() {
        return Err(Failure::usage(
            "the file is gzip-compressed and standard output is a terminal: redirect it, pipe it to zcat, or give --output FILE",
        ));
    }
    Ok(())
}

/// The instance's exports of one type, newest first.
async fn list(
    client: &Client,
    instance: &str,
    task_type: TaskType,
) -> Outcome<Vec<DownloadRecord>> {
    let reply: DescribeDownloadRecordsResponse = client
        .call(
            "DescribeDownloadRecords",
            &super::pairs([
                ("DBInstanceId", instance),
                ("DownloadTaskType", task_type.as_str()),
            ]),
        )
        .await?;
    Ok(reply.records)
}

fn print_list(ui: &Ui, records: &[DownloadRecord], format: TableOrJson) -> Outcome {
    match format {
        TableOrJson::Json => output::print_json(&records),
        TableOrJson::Table => {
            if records.is_empty() {
                ui.note("no exports");
            }
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.download_id.to_string(),
                        output::cell(&r.status),
                        r.rows_done.map_or_else(|| "-".into(), |n| n.to_string()),
                        output::cell(&r.file_name),
                        output::shorten(&r.exception_msg, 100),
                    ]
                })
                .collect();
            output::print_text(&output::table(
                &["ID", "STATUS", "ROWS", "FILE", "MESSAGE"],
                &rows,
            ))
        }
    }
}

/// The number of records the export will hold, from the listing's TotalCount with the same
/// filters; None if that cannot be had (it only sizes the progress bar).
async fn expected_rows(
    client: &Client,
    mut params: Vec<(String, String)>,
    top: Option<u32>,
) -> Option<u64> {
    params.push(("PageSize".into(), "30".into()));
    params.push(("PageNumber".into(), "1".into()));
    let reply: DescribeDiagnosisRecordsResponse = client
        .call("DescribeDiagnosisRecords", &params)
        .await
        .ok()?;
    Some(match top {
        Some(n) => reply.total_count.min(u64::from(n)),
        None => reply.total_count,
    })
}

/// Ctrl-C, turned into a value that every wait can look at: once the handler is installed the
/// default "kill the process" is gone, so nothing may miss it.
struct Interrupt(watch::Receiver<bool>);

impl Interrupt {
    fn listen() -> Interrupt {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        Interrupt(rx)
    }

    /// Completes once Ctrl-C was pressed (at once if it already was).
    async fn pressed(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|pressed| *pressed).await.is_err() {
            // The listener is gone (no signal support): never complete.
            std::future::pending::<()>().await;
        }
    }
}

/// Polls DescribeDownloadRecords until export `id` is no longer running; shows its progress.
async fn wait_for_end(
    client: &Client,
    instance: &str,
    task_type: TaskType,
    id: i64,
    expected: Option<u64>,
    poll: Duration,
    interrupt: &Interrupt,
) -> Outcome<DownloadRecord> {
    let mut progress = client.ui.rows(format!("export {id}"), expected);
    let mut unlisted_since: Option<Instant> = None;
    loop {
        let listed = tokio::select! {
            listed = list(client, instance, task_type) => listed?,
            _ = interrupt.pressed() => return Err(stopped_waiting(instance, id)),
        };
        match listed.into_iter().find(|r| r.download_id == id) {
            None => {
                let since = *unlisted_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= UNLISTED_GRACE {
                    return Err(Failure::new(
                        Exit::Refused,
                        format!(
                            "export {id} is not listed for instance {instance} (type {}): check the ID with `gpdiag exports list --instance {instance}`",
                            task_type.as_str()
                        ),
                    ));
                }
                progress.status("waiting for it to be listed");
            }
            Some(record) => {
                unlisted_since = None;
                if let Some(rows) = record.rows_done {
                    progress.set(rows);
                }
                match record.status.as_str() {
                    "running" => progress.status("running"),
                    "finished" => {
                        let rows = progress
                            .summary()
                            .map_or_else(String::new, |s| format!(": {s}"));
                        progress.finish(&format!("export {id} finished{rows}"));
                        return Ok(record);
                    }
                    "failed" => {
                        drop(progress);
                        return Err(Failure::new(
                            Exit::ExportFailed,
                            format!(
                                "export {id} failed on the server: {}",
                                if record.exception_msg.is_empty() {
                                    "no reason given"
                                } else {
                                    record.exception_msg.as_str()
                                }
                            ),
                        ));
                    }
                    other => {
                        return Err(Failure::new(
                            Exit::Server,
                            format!("export {id} has the unknown status {other:?}"),
                        ))
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = interrupt.pressed() => return Err(stopped_waiting(instance, id)),
        }
    }
}

fn stopped_waiting(instance: &str, id: i64) -> Failure {
    Failure::new(
        Exit::Interrupted,
        format!(
            "stopped waiting; export {id} goes on on the server: `gpdiag exports download --instance {instance} {id}` fetches it later, `gpdiag exports cancel --instance {instance} {id}` stops it"
        ),
    )
}

/// Where a download goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Stdout,
    /// This path, exactly.
    File(PathBuf),
    /// The server's file name inside this directory.
    ServerName(PathBuf),
}

impl Target {
    fn parse(output: &Path) -> Target {
        if output == Path::new("-") {
            Target::Stdout
        } else if output.is_dir() {
            Target::ServerName(output.to_owned())
        } else {
            Target::File(output.to_owned())
        }
    }
}

/// The server's name for the file, if it is a plain file name (never a path to somewhere
/// else).
fn plain_file_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    ok.then_some(name)
}

/// Downloads a finished export's file to `target`, checking its length.
async fn download(
    client: &Client,
    instance: &str,
    record: &DownloadRecord,
    target: Target,
    interrupt: &Interrupt,
) -> Outcome {
    let id = record.download_id;
    if record.download_url.is_empty() {
        return Err(Failure::new(
            Exit::Server,
            format!("export {id} is finished but has no DownloadUrl"),
        ));
    }
    let path = match target {
        Target::Stdout => None,
        Target::File(path) => Some(path),
        Target::ServerName(dir) => {
            let name = plain_file_name(&record.file_name).ok_or_else(|| {
                Failure::new(
                    Exit::Server,
                    format!(
                        "the server named the file {:?}, which is not a plain file name: give --output FILE",
                        record.file_name
                    ),
                )
            })?;
            Some(if dir == Path::new(".") {
                PathBuf::from(name)
            } else {
                dir.join(name)
            })
        }
    };
    let again = format!(
        "`gpdiag exports download --instance {instance} {id}` tries again with a fresh link"
    );
    let mut response = tokio::select! {
        r = client.fetch(&record.download_url) => r?,
        _ = interrupt.pressed() => return Err(Failure::new(Exit::Interrupted, format!("interrupted; {again}"))),
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(Failure::new(
            Exit::Download,
            format!(
                "the download link of export {id} answered HTTP {}: {}\n  {again}",
                status.as_u16(),
                super::excerpt(&body)
            ),
        ));
    }
    let announced = response.content_length();
    let label = match &path {
        Some(p) => format!("download {}", p.display()),
        None => "download".to_owned(),
    };
    let mut progress = client.ui.bytes(label, announced);
    let mut sink = Sink::open(path.as_deref())?;
    let mut got: u64 = 0;
    let result: Outcome = async {
        loop {
            let chunk = tokio::select! {
                c = response.chunk() => c,
                _ = interrupt.pressed() => return Err(Failure::new(Exit::Interrupted, format!("interrupted; {again}"))),
            };
            match chunk {
                Ok(Some(bytes)) => {
                    sink.write(&bytes)?;
                    got += bytes.len() as u64;
                    progress.inc(bytes.len() as u64);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Failure::new(
                        Exit::Download,
                        format!(
                            "the download of export {id} broke off after {got}{} bytes: {}\n  {again}",
                            announced.map_or_else(String::new, |n| format!(" of {n}")),
                            super::describe_http_error(&e)
                        ),
                    ))
                }
            }
        }
        if let Some(n) = announced {
            if got != n {
                return Err(Failure::new(
                    Exit::Download,
                    format!(
                        "the download of export {id} is incomplete: {got} bytes received, Content-Length said {n}\n  {again}"
                    ),
                ));
            }
        }
        Ok(())
    }
    .await;
    if let Err(failure) = result {
        drop(progress);
        sink.discard();
        return Err(failure);
    }
    let saved = sink.keep()?;
    let checked = if announced.is_some() {
        ""
    } else {
        " (the server announced no length, so it could not be checked)"
    };
    let rows = record
        .rows_done
        .map_or_else(String::new, |n| format!(", {n} rows"));
    progress.finish(&match saved {
        Some(p) => format!("saved {} ({got} bytes{rows}){checked}", p.display()),
        None => format!("wrote {got} bytes{rows} to standard output{checked}"),
    });
    Ok(())
}

/// The download's destination: standard output, or `NAME.part` beside the final path,
/// renamed to it once complete.
enum Sink {
    Stdout(std::io::StdoutLock<'static>),
    File {
        part: PathBuf,
        path: PathBuf,
        file: std::io::BufWriter<std::fs::File>,
    },
}

impl Sink {
    fn open(path: Option<&Path>) -> Outcome<Sink> {
        let Some(path) = path else {
            return Ok(Sink::Stdout(std::io::stdout().lock()));
        };
        let name = path
            .file_name()
            .ok_or_else(|| Failure::usage(format!("--output {} names no file", path.display())))?;
        let mut part_name = name.to_owned();
        part_name.push(".part");
        let part = path.with_file_name(part_name);
        let file = std::fs::File::create(&part)
            .map_err(|e| Failure::io(&format!("cannot create {}", part.display()), e))?;
        Ok(Sink::File {
            part,
            path: path.to_owned(),
            file: std::io::BufWriter::with_capacity(256 * 1024, file),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Outcome {
        match self {
            Sink::Stdout(out) => out.write_all(bytes).map_err(output::stdout_failure),
            Sink::File { part, file, .. } => file
                .write_all(bytes)
                .map_err(|e| Failure::io(&format!("cannot write {}", part.display()), e)),
        }
    }

    /// Gives up: the partial file is removed.
    fn discard(self) {
        if let Sink::File { part, file, .. } = self {
            drop(file);
            let _ = std::fs::remove_file(part);
        }
    }

    /// Completes: flushed, and the file renamed to its final name. Returns that name.
    fn keep(self) -> Outcome<Option<PathBuf>> {
        match self {
            Sink::Stdout(mut out) => {
                out.flush().map_err(output::stdout_failure)?;
                Ok(None)
            }
            Sink::File { part, path, file } => {
                let finished = file
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all());
                if let Err(e) = finished {
                    let _ = std::fs::remove_file(&part);
                    return Err(Failure::io(&format!("cannot write {}", part.display()), e));
                }
                std::fs::rename(&part, &path).map_err(|e| {
                    let _ = std::fs::remove_file(&part);
                    Failure::io(
                        &format!("cannot rename {} to {}", part.display(), path.display()),
                        e,
                    )
                })?;
                Ok(Some(path))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_server_file_names_are_used() {
        assert_eq!(
            plain_file_name("20260101000000-20260101060000.csv.gz"),
            Some("20260101000000-20260101060000.csv.gz")
        );
        for bad in ["", ".", "..", "../x.csv", "/etc/passwd", "a\\b", "a\nb"] {
            assert_eq!(plain_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn outputs_are_stdout_a_directory_or_a_file() {
        assert_eq!(Target::parse(Path::new("-")), Target::Stdout);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Target::parse(dir.path()),
            Target::ServerName(dir.path().to_owned())
        );
        let file = dir.path().join("x.csv");
        assert_eq!(Target::parse(&file), Target::File(file.clone()));
    }
}
