//! `gpdiag export --wait` and `gpdiag exports download` resume a download that breaks off:
//! the real binary against a real `gpdiag serve` whose download links point at a small TCP
//! proxy that cuts chosen answers after a number of body bytes and records every request; and
//! against a fake link for what a real server never does (ignoring `Range`, answering the
//! wrong part, a link that expires between two requests).

mod support;

#[path = "support/cli.rs"]
#[allow(dead_code)]
mod cli;

use cli::{export_args, Cli, ClientEnv};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::*;

/// Records in the test server: an export file of a few hundred kB.
const RECORDS: u64 = 3000;

/// Reads an HTTP head (request or response) up to and including its blank line, byte by byte
/// so nothing after it is consumed; `None` if the peer closed first.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The value of header `name` in an HTTP head, if present.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A TCP proxy in front of the server for download links (`GET /downloads/…`), one request
/// per connection. Answer `n` (counting download requests from 0) is cut after `cut(n)` bytes
/// of body when that says so: the head and those bytes are forwarded, then the connection is
/// closed. Every download request's head is recorded.
struct Proxy {
    addr: String,
    upstream: Arc<OnceLock<String>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(cut: impl Fn(usize) -> Option<usize> + Send + Sync + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream: Arc<OnceLock<String>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let cut = Arc::new(cut);
        let (up, seen) = (upstream.clone(), requests.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (up, seen, cut) = (up.clone(), seen.clone(), cut.clone());
                std::thread::spawn(move || {
                    let _ = Proxy::serve(client, &up, &seen, &*cut);
                });
            }
        });
        Proxy {
            addr,
            upstream,
            requests,
        }
    }

    fn serve(
        mut client: TcpStream,
        upstream: &OnceLock<String>,
        seen: &Mutex<Vec<String>>,
        cut: &(dyn Fn(usize) -> Option<usize> + Send + Sync),
    ) -> std::io::Result<()> {
        let Some(head) = read_head(&mut client) else {
            return Ok(());
        };
        let limit = if head.starts_with("GET /downloads/") {
            let mut seen = seen.lock().unwrap();
            seen.push(head.clone());
            cut(seen.len() - 1)
        } else {
            None
        };
        // One request per connection: the server closes once it has answered.
        let mut forwarded: String = head
            .trim_end()
            .lines()
            .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
            .map(|line| format!("{line}\r\n"))
            .collect();
        forwarded.push_str("Connection: close\r\n\r\n");
        let mut server = TcpStream::connect(upstream.get().expect("the server runs"))?;
        server.write_all(forwarded.as_bytes())?;
        let Some(answer) = read_head(&mut server) else {
            return Ok(());
        };
        client.write_all(answer.as_bytes())?;
        match limit {
            None => {
                std::io::copy(&mut server, &mut client)?;
            }
            Some(limit) => {
                let mut body = Vec::with_capacity(limit);
                (&mut server).take(limit as u64).read_to_end(&mut body)?;
                client.write_all(&body)?;
            }
        }
        client.flush()?;
        client.shutdown(Shutdown::Both)
    }

    /// The recorded download request heads, in order.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The `Range` header of each recorded download request.
    fn ranges(&self) -> Vec<Option<String>> {
        self.requests()
            .iter()
            .map(|head| header(head, "range").map(str::to_owned))
            .collect()
    }
}

/// A server with RECORDS records whose download links go through `proxy`, and a client that
/// talks to the server directly.
fn start(proxy: Proxy) -> (ClientEnv, Proxy) {
    let public_url = format!("\n[server]\npublic_url = \"http://{}\"\n", proxy.addr);
    let env = ClientEnv::start(RECORDS, "", &public_url);
    proxy.upstream.set(env.server.addr.clone()).unwrap();
    (env, proxy)
}

/// Runs the client in the background and waits for it, killing it (and failing) if it has not
/// ended within `timeout`: a download that never gives up must fail the test, not hang it.
fn run_bounded(cli: &Cli, dir: &Path, args: &[&str], timeout: Duration) -> cli::Run {
    let (out, err) = (dir.join("run.out"), dir.join("run.err"));
    let mut child = cli.spawn(args, &out, &err);
    let status = exit_within(&mut child, timeout, || {
        format!(
            "gpdiag {args:?} still ran after {timeout:?}:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        )
    });
    cli::Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

/// Body bytes of the first cut: well inside the file.
const CUT: usize = 40_000;

#[test]
fn a_download_that_breaks_off_is_resumed_with_range_and_equals_the_file() {
    let _serial = one_at_a_time();
    // Download answers 0 (export --wait), 2 (exports download to stdout), 4 and 5 (one
    // download broken twice) are cut; the others go through whole.
    let (env, proxy) = start(Proxy::start(|n| match n {
        0 | 2 | 4 => Some(CUT),
        5 => Some(CUT / 2),
        _ => None,
    }));
    let run = env
        .cli
        .run(&export_args(&["--wait", "--output", "out.csv"]));
    run.ok();
    let id = *env.server.downloads().keys().max().unwrap();
    let direct = env.fetch_export(id);
    assert!(direct.len() > 2 * CUT, "the file is {} bytes", direct.len());
    let saved = std::fs::read(env.work().join("out.csv")).unwrap();
    assert!(
        saved == direct,
        "the saved file differs from the DownloadUrl's bytes"
    );
    assert_eq!(check_export(&saved, 0..RECORDS), RECORDS);
    assert!(!env.work().join("out.csv.part").exists());
    assert!(
        run.stderr
            .contains(&format!("broke off after {CUT} of {} bytes", direct.len()))
            && run.stderr.contains(&format!(
                "resuming from byte {CUT} in 250 ms (retry 1 of 5)"
            )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "saved out.csv ({} bytes, {RECORDS} rows) after 1 retry",
            direct.len()
        )),
        "{}",
        run.stderr
    );
    let requests = proxy.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(
        proxy.ranges(),
        [None, Some(format!("bytes={CUT}-"))],
        "the second request asked for the rest"
    );
    // Both requests were for the same link.
    let target = |head: &str| head.lines().next().unwrap().to_owned();
    assert_eq!(target(&requests[0]), target(&requests[1]));

    // To standard output the rest is appended just the same.
    let id_text = id.to_string();
    let download = |output: &str| {
        env.cli.run(&[
            "exports",
            "download",
            "--instance",
            INSTANCE,
            &id_text,
            "--output",
            output,
        ])
    };
    let run = download("-");
    run.ok();
    assert!(
        run.stdout == direct,
        "standard output differs from the file"
    );
    assert!(run.stderr.contains("to standard output"), "{}", run.stderr);

    // Broken twice: resumed from each point in turn.
    let run = download("again.csv");
    run.ok();
    assert!(std::fs::read(env.work().join("again.csv")).unwrap() == direct);
    assert!(run.stderr.contains(") after 2 retries"), "{}", run.stderr);
    let ranges = proxy.ranges();
    assert_eq!(
        ranges[2..],
        [
            None,
            Some(format!("bytes={CUT}-")),
            None,
            Some(format!("bytes={CUT}-")),
            Some(format!("bytes={}-", CUT + CUT / 2)),
        ],
        "{ranges:?}"
    );
}

#[test]
fn a_link_that_keeps_breaking_gives_up_after_the_retries_with_exit_9() {
    let _serial = one_at_a_time();
    // Every answer is cut after 1000 bytes: six requests bring 6000 bytes, far from the end.
    let (env, proxy) = start(Proxy::start(|_| Some(1000)));
    let started = Instant::now();
    let run = run_bounded(
        &env.cli,
        &env.work(),
        &export_args(&["--wait", "--output", "out.csv"]),
        Duration::from_secs(120),
    );
    let took = started.elapsed();
    let id = *env.server.downloads().keys().max().unwrap();
    let total = env.fetch_export(id).len();
    run.fails(
        9,
        &[
            &format!("broke off after 6000 of {total} bytes"),
            "gave up after 5 retries",
            "tries again with a fresh link",
            "(retry 5 of 5)",
        ],
    );
    assert_eq!(
        proxy.ranges(),
        [
            None,
            Some("bytes=1000-".into()),
            Some("bytes=2000-".into()),
            Some("bytes=3000-".into()),
            Some("bytes=4000-".into()),
            Some("bytes=5000-".into()),
        ],
        "one first request and five resumptions, no more"
    );
    // No file under either name: a failed download leaves nothing behind.
    let left: Vec<_> = std::fs::read_dir(env.work())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("out.csv"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    eprintln!("gave up after {took:?}");
}

/// A stand-in download link: `GET /file` is answered by `answer(n, head)` for the n-th such
/// request (from 0), as raw HTTP, then the connection is closed; `POST /` (the client's
/// DescribeDownloadRecords) lists one finished export whose link is `/file`.
struct FakeLink {
    addr: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl FakeLink {
    fn start(answer: impl Fn(usize, &str) -> Vec<u8> + Send + 'static) -> FakeLink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (own, seen) = (addr.clone(), heads.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let Some(head) = read_head(&mut stream) else {
                    continue;
                };
                let reply = if head.starts_with("POST") {
                    cli::one_finished_export(&own)
                } else {
                    let mut seen = seen.lock().unwrap();
                    seen.push(head.clone());
                    answer(seen.len() - 1, &head)
                };
                let _ = stream.write_all(&reply);
                let _ = stream.flush();
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        FakeLink { addr, heads }
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|head| header(head, "range").map(str::to_owned))
            .collect()
    }

    fn download(&self, dir: &Path, output: &str) -> cli::Run {
        run_bounded(
            &Cli::new(&self.addr, dir),
            dir,
            &[
                "exports",
                "download",
                "--instance",
                "gp-x",
                "1",
                "--output",
                output,
            ],
            Duration::from_secs(120),
        )
    }
}

/// The fake file: 100 distinct bytes.
fn file() -> Vec<u8> {
    (0..100u8).map(|i| b'0' + i % 64).collect()
}

/// The whole file with a 200, its first `cut` bytes only when given.
fn whole(cut: Option<usize>) -> Vec<u8> {
    let file = file();
    cli::http(
        "200 OK",
        "Content-Length: 100\r\nETag: \"v1\"\r\n",
        &file[..cut.unwrap_or(100)],
    )
}

#[test]
fn servers_that_cannot_resume_start_over_or_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();

    // A server that ignores Range: the file is written again from its start.
    let ignoring = FakeLink::start(|n, _| whole((n == 0).then_some(40)));
    let run = ignoring.download(work, "f.csv");
    run.ok();
    assert_eq!(std::fs::read(work.join("f.csv")).unwrap(), file());
    assert!(
        run.stderr.contains(
            "the server sent the whole file again instead of the bytes from 40: starting over"
        ),
        "{}",
        run.stderr
    );
    // The resumed request carried the range and the file's ETag.
    assert_eq!(ignoring.ranges(), [None, Some("bytes=40-".into())]);
    assert_eq!(
        header(&ignoring.heads.lock().unwrap()[1], "if-range"),
        Some("\"v1\"")
    );
    std::fs::remove_file(work.join("f.csv")).unwrap();

    // The same to standard output, where 40 bytes are already written: a clear failure.
    let ignoring = FakeLink::start(|n, _| whole((n == 0).then_some(40)));
    let run = ignoring.download(work, "-");
    assert_eq!(run.code, 9, "{}", run.stderr);
    assert_eq!(run.stdout, &file()[..40]);
    assert!(
        run.stderr.contains("the server cannot resume it")
            && run.stderr.contains("already on standard output")
            && run.stderr.contains("--output FILE"),
        "{}",
        run.stderr
    );

    // A 206 that does not start where asked: refused, not spliced.
    let wrong = FakeLink::start(|n, _| {
        if n == 0 {
            whole(Some(40))
        } else {
            cli::http(
                "206 Partial Content",
                "Content-Length: 70\r\nContent-Range: bytes 30-99/100\r\n",
                &file()[30..],
            )
        }
    });
    wrong.download(work, "f.csv").fails(
        9,
        &["answered the bytes from 30 when asked for those from 40"],
    );

    // A link that expires between two requests is not tried again.
    let expiring = FakeLink::start(|n, _| {
        if n == 0 {
            whole(Some(40))
        } else {
            cli::link_expired()
        }
    });
    expiring
        .download(work, "f.csv")
        .fails(9, &["answered HTTP 403: The link has expired."]);
    assert_eq!(expiring.ranges().len(), 2, "no retry after a 403");

    // A server error is tried again; a proper 206 completes the file.
    let flaky = FakeLink::start(|n, head| match n {
        0 => whole(Some(40)),
        1 => cli::http("503 Service Unavailable", "Content-Length: 0\r\n", b""),
        _ => {
            assert_eq!(header(head, "range"), Some("bytes=40-"));
            cli::http(
                "206 Partial Content",
                "Content-Length: 60\r\nContent-Range: bytes 40-99/100\r\n",
                &file()[40..],
            )
        }
    });
    let run = flaky.download(work, "f.csv");
    run.ok();
    assert_eq!(std::fs::read(work.join("f.csv")).unwrap(), file());
    assert!(run.stderr.contains("answered HTTP 503"), "{}", run.stderr);
    std::fs::remove_file(work.join("f.csv")).unwrap();

    // Nothing else was left behind: no partial files.
    let left: Vec<_> = std::fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("f.csv"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
