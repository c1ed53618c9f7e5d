//! jsonlog: the line splitter, serde for lines within the cap, and a tolerant streaming scanner
//! (`Salvage`) for lines past it, which keeps a bounded prefix of each wanted value and still
//! finds the keys that come after a huge message (application_name, query_id, …).

use super::text::{field_limit, parse_i64, text, utf8_floor};
use super::time::parse_log_time;
use super::{LogEntry, Parsed, TAIL_RESERVE};
use memchr::{memchr, memchr2};
use serde::Deserialize;
use std::borrow::Cow;

/// A string that borrows from the line when it has no escapes (the timestamp is only read).
#[derive(Deserialize)]
struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);

/// The keys of a jsonlog object that a `LogEntry` uses; serde skips the others. Owned strings
/// cost nothing extra here: the entry keeps them.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    timestamp: Option<Borrowed<'a>>,
    user: Option<String>,
    dbname: Option<String>,
    pid: Option<i64>,
    session_id: Option<String>,
    line_num: Option<i64>,
    error_severity: Option<String>,
    state_code: Option<String>,
    message: Option<String>,
    detail: Option<String>,
    statement: Option<String>,
    application_name: Option<String>,
    backend_type: Option<String>,
    query_id: Option<i64>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Grows `v` by `data` without letting the allocation pass `max` (Vec's doubling would).
fn bounded_extend(v: &mut Vec<u8>, data: &[u8], max: usize) {
    let need = v.len() + data.len();
    if need > v.capacity() {
        let want = (v.capacity() * 2).max(need).min(max.max(need));
        v.reserve_exact(want - v.len());
    }
    v.extend_from_slice(data);
}

/// Buffers up to this size are kept for reuse; bigger ones are freed after their line.
const SMALL_BUFFER: usize = 64 * 1024;

pub(crate) struct JsonSplitter {
    cap: usize,
    /// The partial line, at most `cap` bytes; past that the line goes to `salvage`.
    line: Vec<u8>,
    salvage: Salvage,
    salvaging: bool,
    line_start: u64,
    pos: u64,
}

impl JsonSplitter {
    pub fn new(start_offset: u64, cap: usize) -> Self {
        Self {
            cap,
            line: Vec::new(),
            salvage: Salvage::new(cap),
            salvaging: false,
            line_start: start_offset,
            pos: start_offset,
        }
    }

    pub fn committed_offset(&self) -> u64 {
        self.line_start
    }

    pub fn pending_bytes(&self) -> usize {
        self.line.len()
            + if self.salvaging {
                self.salvage.kept()
            } else {
                0
            }
    }

    pub fn retained_capacity(&self) -> usize {
        self.line.capacity() + self.salvage.capacity()
    }

    pub fn push(&mut self, mut input: &[u8], emit: &mut impl FnMut(Parsed)) {
        while !input.is_empty() {
            let newline = memchr(b'\n', input);
            let chunk = &input[..newline.unwrap_or(input.len())];
            if !self.salvaging && self.line.len() + chunk.len() > self.cap {
                self.salvaging = true;
                self.salvage.reset();
                self.salvage.feed(&self.line);
                self.line.clear();
                // Only one of the two buffers may be big at a time.
                if self.line.capacity() > SMALL_BUFFER {
                    self.line = Vec::new();
                }
            }
            let Some(i) = newline else {
                if self.salvaging {
                    self.salvage.feed(chunk);
                } else {
                    bounded_extend(&mut self.line, chunk, self.cap);
                }
                self.pos += chunk.len() as u64;
                return;
            };
            self.pos += i as u64 + 1;
            let (start, end) = (self.line_start, self.pos);
            if self.salvaging {
                self.salvage.feed(chunk);
                self.salvaging = false;
                let parsed = self.salvage.finish(start, end);
                self.salvage.release();
                emit(parsed);
            } else if self.line.is_empty() {
                // The common case: the whole line is in this chunk, parse it in place.
                if let Some(parsed) = parse_line(chunk, start, end) {
                    emit(parsed);
                }
            } else {
                bounded_extend(&mut self.line, chunk, self.cap);
                if let Some(parsed) = parse_line(&self.line, start, end) {
                    emit(parsed);
                }
                self.line.clear();
            }
            self.line_start = self.pos;
            input = &input[i + 1..];
        }
    }
}

/// One line within the cap; `None` for a blank line.
fn parse_line(line: &[u8], start: u64, end: u64) -> Option<Parsed> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let bad = |reason: String| Parsed::Bad {
        offset_start: start,
        offset_end: end,
        reason,
    };
    let lossy;
    let s = match std::str::from_utf8(line) {
        Ok(s) => s,
        Err(_) => {
            lossy = String::from_utf8_lossy(line);
            &lossy
        }
    };
    let j: Line<'_> = match serde_json::from_str(s) {
        Ok(j) => j,
        Err(e) => return Some(bad(format!("not a jsonlog record: {e}"))),
    };
    let Some(Borrowed(timestamp)) = j.timestamp else {
        return Some(bad("a jsonlog record without a timestamp".into()));
    };
    let log_time = match parse_log_time(timestamp.as_bytes()) {
        Ok(t) => t,
        Err(reason) => return Some(bad(reason)),
    };
    Some(Parsed::Entry(LogEntry {
        offset_start: start,
        offset_end: end,
        log_time,
        user: nonempty(j.user),
        database: nonempty(j.dbname),
        pid: j.pid,
        session_id: j.session_id.unwrap_or_default(),
        line_num: j.line_num,
        command_count: None,
        segment: None,
        severity: j.error_severity.unwrap_or_default(),
        sql_state: nonempty(j.state_code).filter(|s| s != "00000"),
        message: j.message.unwrap_or_default(),
        detail: nonempty(j.detail),
        statement: nonempty(j.statement),
        application_name: nonempty(j.application_name),
        backend_type: nonempty(j.backend_type),
        query_id: j.query_id.filter(|&q| q != 0),
        truncated: false,
        message_truncated: false,
        statement_truncated: false,
    }))
}

/// The keys `Salvage` keeps, in `Line`'s order.
const KEYS: [&[u8]; 14] = [
    b"timestamp",
    b"user",
    b"dbname",
    b"pid",
    b"session_id",
    b"line_num",
    b"error_severity",
    b"state_code",
    b"message",
    b"detail",
    b"statement",
    b"application_name",
    b"backend_type",
    b"query_id",
];
const TIMESTAMP: usize = 0;
const USER: usize = 1;
const DBNAME: usize = 2;
const PID: usize = 3;
const SESSION_ID: usize = 4;
const LINE_NUM: usize = 5;
const SEVERITY: usize = 6;
const STATE_CODE: usize = 7;
const MESSAGE: usize = 8;
const DETAIL: usize = 9;
const STATEMENT: usize = 10;
const APPLICATION_NAME: usize = 11;
const BACKEND_TYPE: usize = 12;
const QUERY_ID: usize = 13;

/// Keys longer than this are none of ours; their bytes are not kept.
const MAX_KEY: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    BeforeKey,
    Key,
    KeyEscape,
    AfterKey,
    BeforeValue,
    Str,
    StrEscape,
    StrUnicode,
    Bare,
    Nested,
    NestedStr,
    NestedStrEscape,
    Done,
}

/// A byte-at-a-time scanner for one flat JSON object (jsonlog's shape) that never holds more
/// than the cap plus the reserve: string values are unescaped as they stream by and cut where
/// their budget ends; unknown keys and nested values are skipped. Malformed input never fails,
/// it just yields fewer keys.
struct Salvage {
    cap: usize,
    state: State,
    buf: Vec<u8>,
    spans: [Option<(usize, usize)>; KEYS.len()],
    key: Vec<u8>,
    key_too_long: bool,
    /// The key whose value is being read, if it is one we keep.
    current: Option<usize>,
    value_start: usize,
    value_limit: usize,
    value_cut: bool,
    truncated: bool,
    /// Bit k set: the value of `KEYS[k]` was cut.
    cut_keys: u32,
    unicode: u32,
    unicode_digits: u8,
    high_surrogate: Option<u32>,
    depth: u32,
}

impl Salvage {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            state: State::BeforeKey,
            buf: Vec::new(),
            spans: [None; KEYS.len()],
            key: Vec::with_capacity(MAX_KEY),
            key_too_long: false,
            current: None,
            value_start: 0,
            value_limit: 0,
            value_cut: false,
            truncated: false,
            cut_keys: 0,
            unicode: 0,
            unicode_digits: 0,
            high_surrogate: None,
            depth: 0,
        }
    }

    fn reset(&mut self) {
        self.state = State::BeforeKey;
        self.buf.clear();
        self.spans = [None; KEYS.len()];
        self.current = None;
        self.truncated = false;
        self.cut_keys = 0;
        self.high_surrogate = None;
    }

    /// Frees a big buffer once its line is done, so that the line buffer and this one are
    /// never both big.
    fn release(&mut self) {
        if self.buf.capacity() > SMALL_BUFFER {
            self.buf = Vec::new();
        }
    }

    fn kept(&self) -> usize {
        self.buf.len()
    }

    fn capacity(&self) -> usize {
        self.buf.capacity() + self.key.capacity()
    }

    fn start_value(&mut self) {
        self.value_start = self.buf.len();
        self.value_limit = field_limit(self.buf.len(), self.cap);
        self.value_cut = false;
        self.high_surrogate = None;
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.current.is_none() || bytes.is_empty() {
            return;
        }
        let room = self.value_limit.saturating_sub(self.buf.len());
        let n = bytes.len().min(room);
        if n < bytes.len() {
            self.value_cut = true;
            self.truncated = true;
        }
        bounded_extend(&mut self.buf, &bytes[..n], self.cap + TAIL_RESERVE);
    }

    fn keep_char(&mut self, c: char) {
        let mut b = [0; 4];
        self.keep(c.encode_utf8(&mut b).as_bytes());
    }

    /// A high surrogate not followed by a low one stands for nothing: U+FFFD.
    fn flush_surrogate(&mut self) {
        if self.high_surrogate.take().is_some() {
            self.keep_char(char::REPLACEMENT_CHARACTER);
        }
    }

    fn unicode_unit(&mut self, u: u32) {
        match u {
            0xD800..=0xDBFF => {
                self.flush_surrogate();
                self.high_surrogate = Some(u);
            }
            0xDC00..=0xDFFF => match self.high_surrogate.take() {
                Some(h) => {
                    let c = 0x10000 + ((h - 0xD800) << 10) + (u - 0xDC00);
                    self.keep_char(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                None => self.keep_char(char::REPLACEMENT_CHARACTER),
            },
            _ => {
                self.flush_surrogate();
                self.keep_char(char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
        }
    }

    fn end_value(&mut self) {
        self.flush_surrogate();
        if let Some(k) = self.current.take() {
            if self.value_cut {
                let end = self.value_start + utf8_floor(&self.buf[self.value_start..]);
                self.buf.truncate(end);
                self.cut_keys |= 1 << k;
            } else {
                // A later duplicate key replaces the value, and its flag.
                self.cut_keys &= !(1 << k);
            }
            self.spans[k] = Some((self.value_start, self.buf.len()));
        }
    }

    fn feed(&mut self, input: &[u8]) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return,
                State::BeforeKey => match b {
                    b'"' => {
                        self.key.clear();
                        self.key_too_long = false;
                        self.state = State::Key;
                    }
                    b'}' => self.state = State::Done,
                    _ => {}
                },
                State::Key => match b {
                    b'\\' => self.state = State::KeyEscape,
                    b'"' => self.state = State::AfterKey,
                    _ => self.key_byte(b),
                },
                State::KeyEscape => {
                    self.key_byte(b);
                    self.state = State::Key;
                }
                State::AfterKey => {
                    if b == b':' {
                        self.current = if self.key_too_long {
                            None
                        } else {
                            KEYS.iter().position(|k| *k == self.key.as_slice())
                        };
                        self.state = State::BeforeValue;
                    }
                }
                State::BeforeValue => match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b'"' => {
                        self.start_value();
                        self.state = State::Str;
                    }
                    b'{' | b'[' => {
                        self.current = None;
                        self.depth = 1;
                        self.state = State::Nested;
                    }
                    _ => {
                        self.start_value();
                        self.state = State::Bare;
                        continue;
                    }
                },
                State::Str => {
                    let rest = &input[i..];
                    match memchr2(b'"', b'\\', rest) {
                        None => {
                            if !rest.is_empty() {
                                self.flush_surrogate();
                            }
                            self.keep(rest);
                            return;
                        }
                        Some(k) => {
                            if k > 0 {
                                self.flush_surrogate();
                            }
                            self.keep(&rest[..k]);
                            i += k;
                            if rest[k] == b'"' {
                                self.end_value();
                                self.state = State::BeforeKey;
                            } else {
                                self.state = State::StrEscape;
                            }
                        }
                    }
                }
                State::StrEscape => {
                    if b == b'u' {
                        self.unicode = 0;
                        self.unicode_digits = 0;
                        self.state = State::StrUnicode;
                    } else {
                        self.flush_surrogate();
                        let c = match b {
                            b'n' => b'\n',
                            b't' => b'\t',
                            b'r' => b'\r',
                            b'b' => 0x08,
                            b'f' => 0x0c,
                            other => other,
                        };
                        self.keep(&[c]);
                        self.state = State::Str;
                    }
                }
                State::StrUnicode => match (b as char).to_digit(16) {
                    Some(d) => {
                        self.unicode = self.unicode * 16 + d;
                        self.unicode_digits += 1;
                        if self.unicode_digits == 4 {
                            self.unicode_unit(self.unicode);
                            self.state = State::Str;
                        }
                    }
                    None => {
                        // A broken escape: mark it and read the byte as string content.
                        self.flush_surrogate();
                        self.keep_char(char::REPLACEMENT_CHARACTER);
                        self.state = State::Str;
                        continue;
                    }
                },
                State::Bare => match b {
                    b',' | b' ' | b'\t' | b'\r' | b'\n' => {
                        self.end_value();
                        self.state = State::BeforeKey;
                    }
                    b'}' => {
                        self.end_value();
                        self.state = State::Done;
                    }
                    _ => self.keep(&[b]),
                },
                State::Nested => match b {
                    b'"' => self.state = State::NestedStr,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            self.state = State::BeforeKey;
                        }
                    }
                    _ => {}
                },
                State::NestedStr => match b {
                    b'\\' => self.state = State::NestedStrEscape,
                    b'"' => self.state = State::Nested,
                    _ => {}
                },
                State::NestedStrEscape => self.state = State::NestedStr,
            }
            i += 1;
        }
    }

    fn key_byte(&mut self, b: u8) {
        if self.key.len() < MAX_KEY {
            self.key.push(b);
        } else {
            self.key_too_long = true;
        }
    }

    fn span(&self, k: usize) -> Option<&[u8]> {
        self.spans[k].map(|(s, e)| &self.buf[s..e])
    }

    fn string(&self, k: usize) -> Option<String> {
        self.span(k).filter(|b| !b.is_empty()).map(text)
    }

    /// A cut number would be a wrong number: none instead.
    fn number(&self, k: usize) -> Option<i64> {
        if self.cut_keys & (1 << k) != 0 {
            return None;
        }
        self.span(k).and_then(parse_i64)
    }

    /// The entry of the line that spans `[start, end)`.
    fn finish(&mut self, start: u64, end: u64) -> Parsed {
        // A line that ends inside a value (malformed or cut by the writer) keeps what it had.
        if matches!(
            self.state,
            State::Str | State::StrEscape | State::StrUnicode | State::Bare
        ) {
            self.end_value();
        }
        self.state = State::Done;
        let bad = |reason: String| Parsed::Bad {
            offset_start: start,
            offset_end: end,
            reason,
        };
        let Some(timestamp) = self.span(TIMESTAMP) else {
            return bad(format!(
                "a jsonlog line of {} bytes (over the record cap) without a readable timestamp",
                end - start
            ));
        };
        let log_time = match parse_log_time(timestamp) {
            Ok(t) => t,
            Err(reason) => return bad(reason),
        };
        Parsed::Entry(LogEntry {
            offset_start: start,
            offset_end: end,
            log_time,
            user: self.string(USER),
            database: self.string(DBNAME),
            pid: self.number(PID),
            session_id: self.string(SESSION_ID).unwrap_or_default(),
            line_num: self.number(LINE_NUM),
            command_count: None,
            segment: None,
            severity: self.string(SEVERITY).unwrap_or_default(),
            sql_state: self.string(STATE_CODE).filter(|s| s != "00000"),
            message: self.string(MESSAGE).unwrap_or_default(),
            detail: self.string(DETAIL),
            statement: self.string(STATEMENT),
            application_name: self.string(APPLICATION_NAME),
            backend_type: self.string(BACKEND_TYPE),
            query_id: self.number(QUERY_ID).filter(|&q| q != 0),
            truncated: self.truncated,
            message_truncated: self.cut_keys & (1 << MESSAGE) != 0,
            statement_truncated: self.cut_keys & (1 << STATEMENT) != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn salvage(line: &str, cap: usize, chunk: usize) -> Parsed {
        let mut s = Salvage::new(cap);
        for c in line.as_bytes().chunks(chunk) {
            s.feed(c);
        }
        s.finish(0, line.len() as u64 + 1)
    }

    #[test]
    fn salvage_reads_what_serde_reads() {
        let line = r#"{"timestamp":"2026-12-04 19:21:35.724 UTC","user":"Ünïcødé user","dbname":"bench","pid":6613,"remote_port":52084,"session_id":"6b1312bf.19d5","line_num":12,"ps":"SELECT","error_severity":"ERROR","state_code":"22012","message":"division \"by\" zero\n\tdone \u00fc \ud83d\udc18","context":{"a":[1,"}"]},"statement":"SELECT 1/0;","application_name":"edge,\"case\" app","backend_type":"client backend","query_id":-8441324848661855122}"#;
        let expected = parse_line(line.as_bytes(), 0, line.len() as u64 + 1);
        // `context` is an object here only to exercise the nested skip; serde skips it too.
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(
                Some(salvage(line, 1 << 20, chunk)),
                expected,
                "chunk {chunk}"
            );
        }
        let Some(Parsed::Entry(e)) = expected else {
            panic!("{expected:?}")
        };
        assert_eq!(e.message, "division \"by\" zero\n\tdone ü 🐘");
        assert_eq!(e.query_id, Some(-8441324848661855122));
    }

    #[test]
    fn salvage_cuts_long_values_and_keeps_the_keys_after_them() {
        let long = "é".repeat(5000);
        let line = format!(
            r#"{{"timestamp":"2026-12-04 19:21:35.724 UTC","session_id":"s","line_num":3,"error_severity":"LOG","message":"{long}","application_name":"app","query_id":7}}"#
        );
        let Parsed::Entry(e) = salvage(&line, 1024, 100) else {
            panic!()
        };
        assert!(e.truncated && e.message_truncated && !e.statement_truncated);
        // The cap covers every kept value; the 32 bytes before the message leave it the rest.
        assert!(
            e.message.len() <= 1024 - 32 && e.message.len() >= 1024 - 34,
            "{}",
            e.message.len()
        );
        assert!(e.message.chars().all(|c| c == 'é'));
        assert_eq!(e.application_name.as_deref(), Some("app"));
        assert_eq!(e.query_id, Some(7));
        assert_eq!(e.line_num, Some(3));
    }

    #[test]
    fn salvage_tolerates_broken_escapes_and_surrogates() {
        let line =
            r#"{"timestamp":"2026-12-04 19:21:35.724 UTC","message":"a\u12xb\ud800c\udc00d"}"#;
        let Parsed::Entry(e) = salvage(line, 1 << 20, 1) else {
            panic!()
        };
        assert_eq!(e.message, "a\u{fffd}xb\u{fffd}c\u{fffd}d");
    }
}
