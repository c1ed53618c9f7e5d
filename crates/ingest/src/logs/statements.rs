//! Turning log entries into query records: `duration:` lines (simple protocol statements and
//! extended-protocol executes), failed statements (ERROR/FATAL/PANIC with a statement), and
//! auto_explain plans joined to the execution they belong to.
//!
//! Plan joins. The simple protocol logs a statement's plan *before* its `duration:` record (the
//! portal is dropped, which ends the executor, before the duration is logged), so a plan waits
//! in `pending` for the next query record of its session. The extended protocol logs the plan
//! of a row-returning portal *after* the `execute` record (the portal ends at Sync), and the plan
//! of an INSERT/UPDATE/DELETE (`ModifyTable` on top; the executor runs to its end inside Execute)
//! before it; so the session's last execute record is held for one record, and a plan that
//! follows it and is not a `ModifyTable` plan is attached by pushing that record again, with the
//! same `query_id` (the store's upsert replaces the first version).

use super::{LogEntry, LogFormat};
use chrono::{DateTime, Utc};
use gpdiag_core::{QueryRecord, QueryStatus};
use std::collections::{BTreeMap, HashMap};

/// Sessions that may each hold a pending plan (and, separately, a held execute record).
pub const DEFAULT_MAX_SESSIONS: usize = 4096;
/// Bytes of plan text (and of held execute records) kept across all sessions.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// What a log message is, for the statement builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    /// `duration: X ms  statement: SQL`; the SQL starts at byte `sql`.
    Statement {
        us: i64,
        sql: usize,
    },
    /// `duration: X ms  execute <name>: SQL` (also `execute fetch from S_1/C_2: SQL`).
    Execute {
        us: i64,
        sql: usize,
    },
    /// `duration: X ms  plan:\n{…}`; the plan starts at byte `body`.
    Plan {
        body: usize,
    },
    /// Any other `duration:` record: parse, bind, a bare duration, a fastpath call.
    OtherDuration,
    Disconnection,
    Other,
}

/// `X` of `duration: X ms` in microseconds, read from the decimal text exactly (PostgreSQL
/// prints three decimals; more are cut, fewer are padded). Returns the value and the rest.
fn duration_us(s: &str) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 || int_len > 15 {
        return None;
    }
    let mut us: i64 = 0;
    for &d in &b[..int_len] {
        us = us * 10 + i64::from(d - b'0');
    }
    let mut i = int_len;
    let mut frac: i64 = 0;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            if frac_digits < 6 {
                frac = frac * 10 + i64::from(d - b'0');
                frac_digits += 1;
            }
            i += 1;
        }
    }
    for _ in frac_digits..6 {
        frac *= 10;
    }
    // The unit is ms: the integer part is ms, six fraction digits above would be ns; keep µs.
    let us = us * 1000 + frac / 1000;
    let rest = s[i..].strip_prefix(" ms")?;
    Some((us, rest))
}

fn classify(message: &str) -> Message {
    let Some(after) = message.strip_prefix("duration: ") else {
        if message.starts_with("disconnection: ") {
            return Message::Disconnection;
        }
        return Message::Other;
    };
    let Some((us, rest)) = duration_us(after) else {
        return Message::Other;
    };
    let at = |tail: &str| message.len() - tail.len();
    if let Some(sql) = rest.strip_prefix("  statement: ") {
        Message::Statement { us, sql: at(sql) }
    } else if let Some(named) = rest.strip_prefix("  execute ") {
        match named.find(": ") {
            Some(i) => Message::Execute {
                us,
                sql: at(&named[i + 2..]),
            },
            None => Message::OtherDuration,
        }
    } else if let Some(plan) = rest.strip_prefix("  plan:") {
        let plan = plan.strip_prefix('\n').unwrap_or(plan);
        Message::Plan { body: at(plan) }
    } else {
        Message::OtherDuration
    }
}

/// Whether a plan's top node modifies a table (INSERT/UPDATE/DELETE/MERGE), which the extended
/// protocol runs to its end inside Execute, so its plan comes before the execute record.
fn modifies_table(plan: &str, json: bool) -> bool {
    if json {
        let Some(at) = plan.find("\"Node Type\": \"") else {
            return false;
        };
        plan[at + 14..].starts_with("ModifyTable\"")
    } else {
        // Text format: the first line after `Query Text: …` is the top node.
        plan.lines()
            .map(str::trim_start)
            .find(|l| !l.is_empty() && !l.starts_with("Query Text:"))
            .is_some_and(|l| {
                ["Insert on ", "Update on ", "Delete on ", "Merge on "]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
    }
}

/// A plan waiting for the query record of its session.
struct PendingPlan {
    /// The file it was read from (see [`StatementBuilder::set_source`]) and where it starts.
    source: u64,
    offset: u64,
    line_num: Option<i64>,
    command_count: Option<i64>,
    query_id: Option<i64>,
    text: String,
    json: bool,
}

/// An execute record already pushed, kept for one record in case its plan follows it.
struct HeldExecute {
    /// The file it was read from and where its record starts: a restart before its plan
    /// arrives reads it again.
    source: u64,
    offset: u64,
    line_num: Option<i64>,
    command_count: Option<i64>,
    record: QueryRecord,
}

trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for PendingPlan {
    fn weight(&self) -> usize {
        self.text.len() + 64
    }
}

impl Weight for HeldExecute {
    fn weight(&self) -> usize {
        let r = &self.record;
        r.sql.len()
            + r.query_id.len()
            + r.session_id.len()
            + r.database.len()
            + r.user.len()
            + r.parameters.as_ref().map_or(0, String::len)
            + 256
    }
}

/// One value per session, at most `max_len` of them and `max_bytes` in all; the oldest insert
/// is evicted first.
struct SessionMap<V> {
    map: HashMap<String, (u64, V)>,
    order: BTreeMap<u64, String>,
    next: u64,
    bytes: usize,
    max_len: usize,
    max_bytes: usize,
}

impl<V: Weight> SessionMap<V> {
    fn new(max_len: usize, max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            bytes: 0,
            max_len: max_len.max(1),
            max_bytes,
        }
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn remove(&mut self, session: &str) -> Option<V> {
        let (seq, v) = self.map.remove(session)?;
        self.order.remove(&seq);
        self.bytes -= v.weight();
        Some(v)
    }

    fn insert(&mut self, session: &str, v: V) {
        self.remove(session);
        let weight = v.weight();
        if weight > self.max_bytes {
            return;
        }
        while self.map.len() >= self.max_len || self.bytes + weight > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, old)) = self.map.remove(&oldest) {
                self.bytes -= old.weight();
            }
        }
        let seq = self.next;
        self.next += 1;
        self.bytes += weight;
        self.order.insert(seq, session.to_owned());
        self.map.insert(session.to_owned(), (seq, v));
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|(_, v)| v)
    }

    /// Drops every value `stale` says is stale.
    fn forget(&mut self, stale: impl Fn(&V) -> bool) {
        let sessions: Vec<String> = self
            .map
            .iter()
            .filter(|(_, (_, v))| stale(v))
            .map(|(session, _)| session.clone())
            .collect();
        for session in sessions {
            self.remove(&session);
        }
    }
}

/// Builds query records from the entries of one instance's log, in file order.
pub struct StatementBuilder {
    instance: String,
    format: LogFormat,
    plans: SessionMap<PendingPlan>,
    executes: SessionMap<HeldExecute>,
    /// The file entries come from now. A plan and its statement may be written to two files
    /// (the server rotates between any two records), so one builder serves every file.
    source: u64,
}

impl StatementBuilder {
    pub fn new(instance: &str, format: LogFormat) -> Self {
        Self::with_limits(
            instance,
            format,
            DEFAULT_MAX_SESSIONS,
            DEFAULT_MAX_PENDING_BYTES,
        )
    }

    /// `max_sessions` bounds the sessions with a pending plan (and, separately, with a held
    /// execute record); `max_pending_bytes` the plan text (and held records) kept in all.
    pub fn with_limits(
        instance: &str,
        format: LogFormat,
        max_sessions: usize,
        max_pending_bytes: usize,
    ) -> Self {
        Self {
            instance: instance.to_owned(),
            format,
            plans: SessionMap::new(max_sessions, max_pending_bytes),
            executes: SessionMap::new(max_sessions, max_pending_bytes),
            source: 0,
        }
    }

    /// Says which file the next entries come from (any number that tells files apart).
    pub fn set_source(&mut self, source: u64) {
        self.source = source;
    }

    /// Stops waiting for partners of the current file's plans and executes that start before
    /// `offset`: one backend writes a plan and its statement back to back, so one left far
    /// behind (its session went idle, or its statement was never logged) has none to wait for.
    pub fn expire_before(&mut self, offset: u64) {
        let source = self.source;
        self.plans
            .forget(|p| p.source == source && p.offset < offset);
        self.executes
            .forget(|e| e.source == source && e.offset < offset);
    }

    /// In the current file, the start of the oldest plan still waiting for its statement, or
    /// of an execute whose plan may still follow (a restart must re-read from there), if any.
    pub fn oldest_pending_offset(&self) -> Option<u64> {
        let source = self.source;
        let plans = self
            .plans
            .values()
            .filter(|p| p.source == source)
            .map(|p| p.offset);
        let executes = self
            .executes
            .values()
            .filter(|e| e.source == source)
            .map(|e| e.offset);
        plans.chain(executes).min()
    }

    /// Sessions with a plan waiting for its statement.
    pub fn pending_plans(&self) -> usize {
        self.plans.len()
    }

    /// Takes entries in file order; pushes every query record they complete onto `out`. A
    /// record may be pushed a second time, with the same `query_id` and its plan attached, when
    /// the plan is logged after it (extended protocol; see the module documentation).
    pub fn accept(&mut self, entry: LogEntry, out: &mut Vec<QueryRecord>) {
        // Greenplum: only the coordinator's lines are the user's statements; segments log the
        // slices they ran, under the same session and command numbers.
        if self.format == LogFormat::GreenplumCsvlog && entry.segment != Some(-1) {
            return;
        }
        // Any record of the session ends the window in which a plan may follow an execute.
        let held = if self.executes.is_empty() {
            None
        } else {
            self.executes.remove(&entry.session_id)
        };
        let message = classify(&entry.message);
        match message {
            Message::Plan { body } => self.plan(entry, body, held, out),
            Message::Statement { us, sql } | Message::Execute { us, sql } => {
                let plan = self.take_plan(&entry, entry.message.get(sql..).unwrap_or(""));
                let held = HeldExecute {
                    source: self.source,
                    offset: entry.offset_start,
                    line_num: entry.line_num,
                    command_count: entry.command_count,
                    record: self.finished(entry, us, sql, plan),
                };
                if matches!(message, Message::Execute { .. }) {
                    out.push(held.record.clone());
                    let session = held.record.session_id.clone();
                    self.executes.insert(&session, held);
                } else {
                    out.push(held.record);
                }
            }
            Message::OtherDuration | Message::Disconnection => {
                // Parse/bind/bare durations belong to a statement whose plan, if any, has not
                // been logged yet; a disconnection ends the session.
                if !self.plans.is_empty() {
                    self.plans.remove(&entry.session_id);
                }
            }
            Message::Other => {
                if matches!(entry.severity.as_str(), "ERROR" | "FATAL" | "PANIC")
                    && entry.statement.is_some()
                {
                    let sql = entry.statement.as_deref().unwrap_or("");
                    let plan = self.take_plan(&entry, sql);
                    out.push(self.failed(entry, plan));
                }
            }
        }
    }

    fn plan(
        &mut self,
        entry: LogEntry,
        body: usize,
        held: Option<HeldExecute>,
        out: &mut Vec<QueryRecord>,
    ) {
        // A cut plan is no JSON document; it is dropped, and with it any older pending plan of
        // the session, which can no longer be the statement's.
        if entry.message_truncated {
            self.plans.remove(&entry.session_id);
            return;
        }
        let mut text = entry.message;
        text.drain(..body);
        let json = text.trim_start().starts_with('{');
        if let Some(mut held) = held {
            let follows = match self.format {
                LogFormat::GreenplumCsvlog => {
                    held.command_count.is_some() && held.command_count == entry.command_count
                }
                _ => {
                    matches!((held.line_num, entry.line_num), (Some(e), Some(p)) if p == e + 1)
                        && (ids_agree(held.record.pg_query_id, entry.query_id)
                            || plan_is_for(&text, json, &held.record.sql))
                }
            };
            let has_plan = held.record.plan_json.is_some() || held.record.plan_text.is_some();
            if follows && !has_plan && !modifies_table(&text, json) {
                set_plan(&mut held.record, text, json);
                out.push(held.record);
                return;
            }
        }
        let plan = PendingPlan {
            source: self.source,
            offset: entry.offset_start,
            line_num: entry.line_num,
            command_count: entry.command_count,
            query_id: entry.query_id,
            text,
            json,
        };
        // The latest plan of a session replaces older ones: only the record right before the
        // statement can be its plan (nested statements' plans come first).
        self.plans.insert(&entry.session_id, plan);
    }

    /// The session's pending plan if it belongs to `entry`, whose SQL is `sql`; the session's
    /// pending plan is gone either way.
    fn take_plan(&mut self, entry: &LogEntry, sql: &str) -> Option<PendingPlan> {
        if self.plans.is_empty() {
            return None;
        }
        let plan = self.plans.remove(&entry.session_id)?;
        let belongs = match self.format {
            LogFormat::GreenplumCsvlog => {
                plan.command_count.is_some() && plan.command_count == entry.command_count
            }
            _ => match (plan.line_num, entry.line_num) {
                // The next line of the session, with the same query_id when both are known, or
                // a plan of this very text: a multi-statement string's record carries its last
                // statement's query_id, its plan an earlier one's.
                (Some(p), Some(s)) if s == p + 1 => {
                    ids_agree(plan.query_id, entry.query_id)
                        || plan_is_for(&plan.text, plan.json, sql)
                }
                // A later line (records such as `temporary file:` are logged when the executor
                // ends, after auto_explain) only when both query_ids are known and equal.
                (Some(p), Some(s)) if s > p => {
                    plan.query_id.is_some() && plan.query_id == entry.query_id
                }
                _ => false,
            },
        };
        belongs.then_some(plan)
    }

    /// The per-execution key: PostgreSQL `session:line`, Greenplum
    /// `session:p<pid>:command_count` (Greenplum numbers sessions from 1 again after a restart;
    /// the coordinator backend's pid keeps a new session from taking an old one's keys);
    /// `session:@offset` for a record without them (never seen in practice).
    fn key(&self, entry: &LogEntry) -> String {
        let n = match self.format {
            LogFormat::GreenplumCsvlog => entry.command_count,
            _ => entry.line_num,
        };
        match (n, self.format, entry.pid) {
            (Some(n), LogFormat::GreenplumCsvlog, Some(pid)) => {
                format!("{}:p{pid}:{n}", entry.session_id)
            }
            (Some(n), _, _) => format!("{}:{}", entry.session_id, n),
            (None, _, _) => format!("{}:@{}", entry.session_id, entry.offset_start),
        }
    }

    /// What every record of `entry` has: its key, session, database, user, log time, source,
    /// PostgreSQL's query_id and the plan joined to it.
    fn record(&self, entry: &mut LogEntry, plan: Option<PendingPlan>) -> QueryRecord {
        let mut record = QueryRecord {
            instance: self.instance.clone(),
            query_id: self.key(entry),
            session_id: std::mem::take(&mut entry.session_id),
            database: entry.database.take().unwrap_or_default(),
            user: entry.user.take().unwrap_or_default(),
            start_time: entry.log_time,
            status: QueryStatus::Finished,
            source: self.format.as_str().to_owned(),
            pg_query_id: entry.query_id,
            ..QueryRecord::default()
        };
        if let Some(plan) = plan {
            set_plan(&mut record, plan.text, plan.json);
        }
        record
    }

    /// A finished statement or execute.
    fn finished(
        &self,
        mut entry: LogEntry,
        us: i64,
        sql_at: usize,
        plan: Option<PendingPlan>,
    ) -> QueryRecord {
        let mut record = self.record(&mut entry, plan);
        let start_us = entry.log_time.timestamp_micros() - us;
        // Truncated to the millisecond, like every stored start time.
        record.start_time = DateTime::<Utc>::from_timestamp_millis(start_us.div_euclid(1000))
            .unwrap_or(entry.log_time);
        record.duration_ms = us / 1000;
        record.duration_us = Some(us);
        record.parameters = entry
            .detail
            .as_deref()
            .and_then(|d| d.strip_prefix("parameters: "))
            .map(str::to_owned);
        record.sql_truncated = entry.message_truncated;
        record.sql = entry.message;
        record.sql.drain(..sql_at);
        record
    }

    fn failed(&self, mut entry: LogEntry, plan: Option<PendingPlan>) -> QueryRecord {
        let mut record = self.record(&mut entry, plan);
        record.error = Some(match &entry.sql_state {
            Some(state) => format!("{state}: {}", entry.message),
            None => entry.message,
        });
        record.sql = entry.statement.unwrap_or_default();
        record.sql_truncated = entry.statement_truncated;
        record
    }
}

/// Two query_ids agree unless both are known and differ.
/// Whether a JSON plan's `"Query Text"` is exactly `sql` (only read when query_ids disagree,
/// so the common path never parses a plan).
fn plan_is_for(plan: &str, json: bool, sql: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "Query Text", borrow)]
        query_text: std::borrow::Cow<'a, str>,
    }
    json && !sql.is_empty()
        && serde_json::from_str::<Head<'_>>(plan).is_ok_and(|head| head.query_text == sql)
}

fn ids_agree(a: Option<i64>, b: Option<i64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// JSON plans (`auto_explain.log_format = json`) go to `plan_json`; the text, YAML and XML
/// formats to `plan_text`.
fn set_plan(record: &mut QueryRecord, text: String, json: bool) {
    if json {
        record.plan_json = Some(text);
    } else {
        record.plan_text = Some(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact() {
        assert_eq!(duration_us("0.707 ms"), Some((707, "")));
        assert_eq!(duration_us("8006.245 ms  x"), Some((8_006_245, "  x")));
        assert_eq!(duration_us("12 ms"), Some((12_000, "")));
        assert_eq!(duration_us("1.5 ms"), Some((1_500, "")));
        assert_eq!(duration_us("0.0001 ms"), Some((0, "")));
        assert_eq!(duration_us("0.001 ms"), Some((1, "")));
        assert_eq!(
            duration_us("999999999999999.999 ms"),
            Some((999_999_999_999_999_999, ""))
        );
        assert_eq!(duration_us("1234567890123456 ms"), None);
        assert_eq!(duration_us(".5 ms"), None);
        assert_eq!(duration_us("5 s"), None);
    }

    #[test]
    fn messages() {
        let m = "duration: 0.042 ms  execute <unnamed>: SELECT 1";
        assert_eq!(
            classify(m),
            Message::Execute {
                us: 42,
                sql: m.len() - 8
            }
        );
        let m = "duration: 1.000 ms  execute fetch from S_1/C_2: SELECT 2";
        assert!(matches!(classify(m), Message::Execute { sql, .. } if &m[sql..] == "SELECT 2"));
        let m = "duration: 1.000 ms  statement: SELECT: 3";
        assert!(matches!(classify(m), Message::Statement { sql, .. } if &m[sql..] == "SELECT: 3"));
        let m = "duration: 1.000 ms  plan:\n{\"Plan\": {}}";
        assert!(matches!(classify(m), Message::Plan { body } if &m[body..] == "{\"Plan\": {}}"));
        for other in [
            "duration: 0.451 ms  parse <unnamed>: SELECT 1",
            "duration: 0.380 ms  bind <unnamed>: SELECT 1",
            "duration: 0.380 ms",
            "duration: 0.380 ms  fastpath function call: \"lo_open\" (OID 952)",
        ] {
            assert_eq!(classify(other), Message::OtherDuration, "{other}");
        }
        assert_eq!(
            classify("disconnection: session time: 0:00:00.041"),
            Message::Disconnection
        );
        assert_eq!(classify("statement: SELECT 1"), Message::Other);
        assert_eq!(classify("duration: soon"), Message::Other);
    }

    #[test]
    fn modify_table_plans() {
        assert!(modifies_table(
            "{\n  \"Query Text\": \"x\",\n  \"Plan\": {\n    \"Node Type\": \"ModifyTable\",",
            true
        ));
        assert!(!modifies_table(
            "{\"Plan\": {\"Node Type\": \"Result\", \"Plans\": [{\"Node Type\": \"ModifyTable\"}]}}",
            true
        ));
        assert!(modifies_table(
            "Query Text: UPDATE t SET a = 1\nUpdate on t  (cost=0.00..35.50 rows=0 width=0)",
            false
        ));
        assert!(!modifies_table(
            "Query Text: SELECT 1\nResult  (cost=0.00..0.01 rows=1 width=4)",
            false
        ));
    }
}
