//! `gpdiag export` (DownloadDiagnosisRecords, then optionally wait and download in one go) and
//! `gpdiag exports list|download|cancel` (DescribeDownloadRecords, CancelDownloadTask).
//!
//! Waiting polls DescribeDownloadRecords and shows gpdiag's `RowsDone` extension as it grows;
//! downloading streams the signed `DownloadUrl` into `FILE.part` (resuming a transfer that
//! breaks off with `Range` from the bytes already written, a few times), checks the byte count
//! against the file's announced length, and only then renames it, so a file under the final name
//! is always whole.

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

/// How many times a download that broke off (or met a server error) is tried again before it
/// fails with exit 9: resumed with `Range` from the bytes already written, or started over when
/// the server sends the whole file instead.
const DOWNLOAD_RETRIES: u32 = 5;
/// The pause before the first retry; each later one waits twice as long, up to
/// `RETRY_PAUSE_MAX` (all five: under 6 seconds).
const RETRY_PAUSE: Duration = Duration::from_millis(250);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Downloads a finished export's file to `target`. A transfer that breaks off is resumed from
/// the bytes already written (`Range: bytes=N-`, taking only a `206` that starts at N), a few
/// times with a short pause; the result must have the file's announced length.
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
    let label = match &path {
        Some(p) => format!("download {}", p.display()),
        None => "download".to_owned(),
    };
    let mut fetch = Fetch {
        client,
        url: &record.download_url,
        id,
        again: &again,
        sink: Sink::open(path.as_deref())?,
        label,
        progress: None,
        got: 0,
        total: None,
        etag: None,
    };
    let mut retries = 0;
    let outcome = loop {
        match fetch.attempt(interrupt).await {
            Ok(Step::Complete) => break Ok(()),
            Ok(Step::More) => {}
            Ok(Step::Broke(what)) => {
                if retries == DOWNLOAD_RETRIES {
                    break Err(Failure::new(
                        Exit::Download,
                        format!("{what}\n  gave up after {DOWNLOAD_RETRIES} retries; {again}"),
                    ));
                }
                retries += 1;
                let pause = RETRY_PAUSE
                    .saturating_mul(1 << (retries - 1).min(16))
                    .min(RETRY_PAUSE_MAX);
                let how = if fetch.got > 0 {
                    format!("resuming from byte {}", fetch.got)
                } else {
                    "trying again".to_owned()
                };
                fetch.note(&format!(
                    "{what}; {how} in {} ms (retry {retries} of {DOWNLOAD_RETRIES})",
                    pause.as_millis()
                ));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = interrupt.pressed() => break Err(interrupted(&again)),
                }
            }
            Err(failure) => break Err(failure),
        }
    };
    let Fetch {
        sink,
        progress,
        got,
        total,
        ..
    } = fetch;
    if let Err(failure) = outcome {
        drop(progress);
        sink.discard();
        return Err(failure);
    }
    let saved = sink.keep()?;
    let checked = if total.is_some() {
        ""
    } else {
        " (the server announced no length, so it could not be checked)"
    };
    let rows = record
        .rows_done
        .map_or_else(String::new, |n| format!(", {n} rows"));
    let resumed = match retries {
        0 => String::new(),
        1 => " after 1 retry".to_owned(),
        n => format!(" after {n} retries"),
    };
    let text = match saved {
        Some(p) => format!(
            "saved {} ({got} bytes{rows}){checked}{resumed}",
            p.display()
        ),
        None => format!("wrote {got} bytes{rows} to standard output{checked}{resumed}"),
    };
    match progress {
        Some(progress) => progress.finish(&text),
        None => client.ui.note(&text),
    }
    Ok(())
}

fn interrupted(again: &str) -> Failure {
    Failure::new(Exit::Interrupted, format!("interrupted; {again}"))
}

/// One download across the requests it takes: what has been written, and what is known about
/// the file.
struct Fetch<'a> {
    client: &'a Client,
    url: &'a str,
    id: i64,
    /// How to try again later, for messages.
    again: &'a str,
    sink: Sink,
    label: String,
    /// Shown once the first answer has said how long the file is.
    progress: Option<super::progress::Progress>,
    /// Bytes written to the sink.
    got: u64,
    /// The file's length, once an answer has said it.
    total: Option<u64>,
    /// The file's strong ETag, if the server gave one: a resumed request sends it in
    /// `If-Range`, so a file that changed meanwhile comes whole instead of spliced.
    etag: Option<String>,
}

/// How one request of a download ended, short of a failure that ends it.
#[derive(Debug)]
enum Step {
    /// Every byte is written.
    Complete,
    /// The server sent less than the rest, as a whole part: ask for what follows, at once.
    More,
    /// The transfer broke off, came up short, or the server failed: worth another try, after a
    /// pause. Says what happened.
    Broke(String),
}

impl Fetch<'_> {
    fn note(&self, text: &str) {
        match &self.progress {
            Some(progress) => progress.note(text),
            None => self.client.ui.note(text),
        }
    }

    fn fail(&self, what: String) -> Failure {
        Failure::new(Exit::Download, format!("{what}\n  {}", self.again))
    }

    /// One request: from byte 0, or (once bytes are written) the rest from `got` on.
    async fn attempt(&mut self, interrupt: &Interrupt) -> Outcome<Step> {
        let id = self.id;
        let from = self.got;
        let sent = tokio::select! {
            r = self.client.fetch(self.url, (from > 0).then_some(from), self.etag.as_deref()) => r,
            _ = interrupt.pressed() => return Err(interrupted(self.again)),
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                let what = format!(
                    "cannot fetch the file of export {id}: {}",
                    super::describe_http_error(&e)
                );
                // A link the client cannot even use will not improve; anything else might.
                return if e.is_builder() || e.is_redirect() {
                    Err(self.fail(what))
                } else {
                    Ok(Step::Broke(what))
                };
            }
        };
        let status = response.status();
        let content_range = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && from > 0 {
                // Asked for the bytes after the last one: the file is whole already.
                let length = content_range.as_deref().and_then(unsatisfied_length);
                if length == Some(from) && self.total.is_none_or(|t| t == from) {
                    self.total = Some(from);
                    return Ok(Step::Complete);
                }
            }
            let what = format!(
                "the download link of export {id} answered HTTP {}: {}",
                status.as_u16(),
                super::excerpt(&body)
            );
            // An expired or refused link (403, 404, 410, …) stays refused.
            return if status.is_server_error() {
                Ok(Step::Broke(what))
            } else {
                Err(self.fail(what))
            };
        }
        // Where this answer's body ends in the file, if it says.
        let end = if status == reqwest::StatusCode::PARTIAL_CONTENT {
            let Some(range) = content_range.as_deref().and_then(parse_content_range) else {
                return Err(self.fail(format!(
                    "the download link of export {id} answered part of the file (HTTP 206) without a usable Content-Range: {content_range:?}"
                )));
            };
            if range.first != from {
                return Err(self.fail(format!(
                    "the download link of export {id} answered the bytes from {} when asked for those from {from}",
                    range.first
                )));
            }
            if let Some(total) = range.total {
                if self.total.is_some_and(|known| known != total) {
                    return Err(self.fail(format!(
                        "the file of export {id} changed length between two requests ({} bytes, then {total})",
                        self.total.unwrap_or_default()
                    )));
                }
                self.total = Some(total);
                if let Some(progress) = &mut self.progress {
                    progress.set_total(total);
                }
            }
            Some(range.last + 1)
        } else {
            // The whole file from its first byte: the first answer, or a server that does not
            // resume (or whose file changed, by If-Range), which means starting over.
            if from > 0 {
                if !self.sink.restart()? {
                    return Err(self.fail(format!(
                        "the download of export {id} broke off and the server cannot resume it (it sent the whole file again when asked for the bytes from {from}), but those {from} bytes are already on standard output\n  save it with --output FILE, which can start over"
                    )));
                }
                self.got = 0;
                self.note(&format!(
                    "the server sent the whole file again instead of the bytes from {from}: starting over"
                ));
            }
            self.total = response.content_length();
            self.etag = response
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .filter(|tag| tag.starts_with('"'))
                .map(str::to_owned);
            if let Some(progress) = &mut self.progress {
                progress.restart(self.total);
            }
            self.total
        };
        let progress = self
            .progress
            .get_or_insert_with(|| self.client.ui.bytes(self.label.clone(), self.total));
        loop {
            let chunk = tokio::select! {
                c = response.chunk() => c,
                _ = interrupt.pressed() => return Err(interrupted(self.again)),
            };
            match chunk {
                Ok(Some(bytes)) => {
                    self.sink.write(&bytes)?;
                    self.got += bytes.len() as u64;
                    progress.inc(bytes.len() as u64);
                }
                Ok(None) => break,
                Err(e) => {
                    return Ok(Step::Broke(format!(
                        "the download of export {id} broke off after {}{} bytes: {}",
                        self.got,
                        self.total.map_or_else(String::new, |n| format!(" of {n}")),
                        super::describe_http_error(&e)
                    )))
                }
            }
        }
        match self.total {
            // No length was announced: what came is all there is.
            None => Ok(Step::Complete),
            Some(total) if self.got == total => Ok(Step::Complete),
            Some(total) if self.got > total => Err(self.fail(format!(
                "the download of export {id} is too long: {} bytes received, the file has {total}",
                self.got
            ))),
            Some(_) if end == Some(self.got) && self.got > from => Ok(Step::More),
            Some(total) => Ok(Step::Broke(format!(
                "the download of export {id} is incomplete: {} bytes received, Content-Length said {total}",
                self.got
            ))),
        }
    }
}

/// `Content-Range: bytes FIRST-LAST/LENGTH` of a 206 (LENGTH may be `*`, unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    first: u64,
    last: u64,
    total: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (span, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.trim().split_once('-')?;
    let (first, last) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse::<u64>().ok()?),
    };
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ContentRange { first, last, total })
}

/// The file's length from a 416's `Content-Range: bytes */LENGTH`.
fn unsatisfied_length(value: &str) -> Option<u64> {
    value.trim().strip_prefix("bytes */")?.trim().parse().ok()
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

    /// Empties the file to write it again from its start; `false` for standard output, where
    /// what is written stays written.
    fn restart(&mut self) -> Outcome<bool> {
        match self {
            Sink::Stdout(_) => Ok(false),
            Sink::File { part, file, .. } => {
                use std::io::{Seek, SeekFrom};
                file.flush()
                    .and_then(|()| file.get_ref().set_len(0))
                    .and_then(|()| file.seek(SeekFrom::Start(0)))
                    .map_err(|e| Failure::io(&format!("cannot write {}", part.display()), e))?;
                Ok(true)
            }
        }
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
    fn content_ranges_are_read_strictly() {
        let range = |first, last, total| Some(ContentRange { first, last, total });
        assert_eq!(
            parse_content_range("bytes 40-99/100"),
            range(40, 99, Some(100))
        );
        assert_eq!(parse_content_range("bytes 0-0/1"), range(0, 0, Some(1)));
        assert_eq!(parse_content_range(" bytes 5-9/* "), range(5, 9, None));
        for bad in [
            "",
            "bytes */100",
            "bytes 40-99/99",
            "bytes 9-5/100",
            "bytes 40-/100",
            "items 0-1/2",
            "bytes 0-1",
            "bytes -1-5/10",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
        assert_eq!(unsatisfied_length("bytes */100"), Some(100));
        assert_eq!(unsatisfied_length("bytes 0-1/100"), None);
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
