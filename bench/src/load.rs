//! The two load generators: closed-loop (each connection sends its next request as soon as the
//! last is answered, for throughput) and open-loop (requests at fixed times whatever the
//! answers do, for the throttling precision), and the statistics they report.

use crate::client::{Connection, RequestFactory};
use hyper::StatusCode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The throttling error code the open-loop phase counts.
pub const THROTTLING_USER: &str = "Throttling.User";

/// Sorted samples (latencies and lateness in microseconds, retry hints in milliseconds).
pub struct Samples {
    sorted: Vec<u32>,
}

impl Samples {
    pub fn new(mut samples: Vec<u32>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Nearest-rank percentile; zero when there are no samples.
    pub fn percentile(&self, p: f64) -> u32 {
        if self.sorted.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn min(&self) -> u32 {
        self.sorted.first().copied().unwrap_or(0)
    }

    pub fn max(&self) -> u32 {
        self.sorted.last().copied().unwrap_or(0)
    }

    /// The arithmetic mean; zero when there are no samples.
    pub fn mean(&self) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        self.sorted.iter().map(|&s| f64::from(s)).sum::<f64>() / self.sorted.len() as f64
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The first thing that went wrong, kept for the report.
fn remember(first: &mut Option<String>, what: impl FnOnce() -> String) {
    if first.is_none() {
        *first = Some(what());
    }
}

pub struct ClosedLoopResult {
    /// 200 answers completed inside the measured window.
    pub ok: u64,
    /// Anything else that answered, warm-up included: there must be none.
    pub non_ok: u64,
    /// Connections that failed or closed, warm-up included: there must be none.
    pub transport_errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    pub latency_us: Samples,
}

impl ClosedLoopResult {
    pub fn requests_per_second(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }
}

#[derive(Default)]
struct ClosedLoopWorker {
    ok: u64,
    non_ok: u64,
    transport_errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

/// Drives `connections` connections flat out for `warmup + duration` and measures the answers
/// completed during the last `duration`. Connection `w` cycles through the accounts starting at
/// account `w`, so the accounts get equal shares.
pub async fn closed_loop(
    addr: SocketAddr,
    factory: Arc<RequestFactory>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<ClosedLoopResult> {
    // Connect first, so handshakes are neither measured nor part of the warm-up's load.
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(addr).await?);
    }
    let measure_from = Instant::now() + warmup;
    let measure_until = measure_from + duration;
    let workers: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(w, connection)| {
            let factory = factory.clone();
            tokio::spawn(closed_loop_worker(
                addr,
                factory,
                connection,
                w,
                measure_from,
                measure_until,
            ))
        })
        .collect();

    let mut total = ClosedLoopWorker::default();
    for worker in workers {
        let w = worker.await??;
        total.ok += w.ok;
        total.non_ok += w.non_ok;
        total.transport_errors += w.transport_errors;
        if total.first_error.is_none() {
            total.first_error = w.first_error;
        }
        total.latencies_us.extend(w.latencies_us);
    }
    Ok(ClosedLoopResult {
        ok: total.ok,
        non_ok: total.non_ok,
        transport_errors: total.transport_errors,
        first_error: total.first_error,
        window: duration,
        latency_us: Samples::new(total.latencies_us),
    })
}

async fn closed_loop_worker(
    addr: SocketAddr,
    factory: Arc<RequestFactory>,
    mut connection: Connection,
    first_account: usize,
    measure_from: Instant,
    measure_until: Instant,
) -> anyhow::Result<ClosedLoopWorker> {
    let mut stats = ClosedLoopWorker::default();
    let mut account = first_account;
    while Instant::now() < measure_until {
        // Signing happens before the clock starts: latency is the server's round trip, while
        // throughput includes the signing cost, which is the same for both servers.
        let request = factory.build(account)?;
        account = account.wrapping_add(1);
        let sent = Instant::now();
        match connection.send(request).await {
            Ok(reply) => {
                let done = Instant::now();
                if reply.status != StatusCode::OK {
                    stats.non_ok += 1;
                    remember(&mut stats.first_error, || {
                        format!("HTTP {}: {}", reply.status.as_u16(), reply.body_text())
                    });
                } else if (measure_from..=measure_until).contains(&done) {
                    stats.ok += 1;
                    stats.latencies_us.push(micros(done - sent));
                }
            }
            Err(error) => {
                stats.transport_errors += 1;
                remember(&mut stats.first_error, || format!("{error:#}"));
                // Keep the load up; if the server is gone this fails and ends the phase.
                connection = Connection::open(addr).await?;
            }
        }
    }
    Ok(stats)
}

pub struct OpenLoopResult {
    pub scheduled: u64,
    pub sent: u64,
    pub accepted: u64,
    pub throttled: u64,
    /// Answers that are neither 200 nor `Throttling.User`: there must be none.
    pub other: u64,
    pub transport_errors: u64,
    pub first_error: Option<String>,
    /// From the first send to the last send.
    pub send_span: Duration,
    /// How late each send was against its schedule.
    pub lateness_us: Samples,
    pub retry_after_ms: Samples,
}

impl OpenLoopResult {
    pub fn offered_per_second(&self) -> f64 {
        self.sent.saturating_sub(1) as f64 / self.send_span.as_secs_f64()
    }

    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.send_span.as_secs_f64()
    }
}

#[derive(Default)]
struct OpenLoopWorker {
    sent: u64,
    accepted: u64,
    throttled: u64,
    other: u64,
    transport_errors: u64,
    first_error: Option<String>,
    first_send: Option<Instant>,
    last_send: Option<Instant>,
    lateness_us: Vec<u32>,
    retry_after_ms: Vec<u32>,
}

/// Sends `rate × duration` requests, request `i` due at `start + i / rate`, over `connections`
/// connections. Each free connection claims the next slot from a shared counter and waits for
/// its time, so a slow answer only occupies one connection and never delays the schedule as
/// long as some connection is free; lateness is measured and reported in case none is.
///
/// Tokio's timer has millisecond resolution, so sends leave in small bunches (5 per
/// millisecond at 5,000/s); the per-second rate, which is what the throttle enforces, is exact.
pub async fn open_loop(
    addr: SocketAddr,
    factory: Arc<RequestFactory>,
    connections: usize,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<OpenLoopResult> {
    let interval = Duration::from_secs(1) / rate.max(1);
    let scheduled = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(addr).await?);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let next_slot = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = opened
        .into_iter()
        .map(|connection| {
            tokio::spawn(open_loop_worker(
                addr,
                factory.clone(),
                connection,
                next_slot.clone(),
                scheduled,
                start,
                interval,
            ))
        })
        .collect();

    let mut total = OpenLoopWorker::default();
    for worker in workers {
        let w = worker.await??;
        total.sent += w.sent;
        total.accepted += w.accepted;
        total.throttled += w.throttled;
        total.other += w.other;
        total.transport_errors += w.transport_errors;
        if total.first_error.is_none() {
            total.first_error = w.first_error;
        }
        total.first_send = match (total.first_send, w.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        total.last_send = total.last_send.max(w.last_send);
        total.lateness_us.extend(w.lateness_us);
        total.retry_after_ms.extend(w.retry_after_ms);
    }
    let send_span = match (total.first_send, total.last_send) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    };
    Ok(OpenLoopResult {
        scheduled,
        sent: total.sent,
        accepted: total.accepted,
        throttled: total.throttled,
        other: total.other,
        transport_errors: total.transport_errors,
        first_error: total.first_error,
        // A span of zero would make the rates infinite; one microsecond is "no span" enough.
        send_span: send_span.max(Duration::from_micros(1)),
        lateness_us: Samples::new(total.lateness_us),
        retry_after_ms: Samples::new(total.retry_after_ms),
    })
}

async fn open_loop_worker(
    addr: SocketAddr,
    factory: Arc<RequestFactory>,
    mut connection: Connection,
    next_slot: Arc<AtomicU64>,
    scheduled: u64,
    start: Instant,
    interval: Duration,
) -> anyhow::Result<OpenLoopWorker> {
    let mut stats = OpenLoopWorker::default();
    loop {
        let slot = next_slot.fetch_add(1, Ordering::Relaxed);
        if slot >= scheduled {
            break;
        }
        let due = start + interval * u32::try_from(slot).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let request = factory.build(0)?;
        let sent = Instant::now();
        stats.sent += 1;
        stats
            .lateness_us
            .push(micros(sent.saturating_duration_since(due)));
        stats.first_send.get_or_insert(sent);
        stats.last_send = Some(sent);
        match connection.send(request).await {
            Ok(reply) if reply.status == StatusCode::OK => stats.accepted += 1,
            Ok(reply) => {
                let throttled = reply.status == StatusCode::BAD_REQUEST
                    && reply.error_code().as_deref() == Some(THROTTLING_USER);
                if throttled {
                    stats.throttled += 1;
                    if let Some(ms) = reply.retry_after_ms {
                        stats
                            .retry_after_ms
                            .push(u32::try_from(ms).unwrap_or(u32::MAX));
                    }
                } else {
                    stats.other += 1;
                    remember(&mut stats.first_error, || {
                        format!("HTTP {}: {}", reply.status.as_u16(), reply.body_text())
                    });
                }
            }
            Err(error) => {
                stats.transport_errors += 1;
                remember(&mut stats.first_error, || format!("{error:#}"));
                connection = Connection::open(addr).await?;
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s = Samples::new((1..=100).rev().collect());
        assert_eq!((s.percentile(50.0), s.percentile(99.0)), (50, 99));
        assert_eq!((s.min(), s.max(), s.len()), (1, 100, 100));
        assert_eq!(Samples::new(Vec::new()).percentile(50.0), 0);
    }
}
