//! csvlog: the incremental record splitter (csv-core's state machine, so quoted fields may span
//! lines and carry doubled quotes) with the per-record byte budget, and the mapping of
//! PostgreSQL (23/24/26 fields) and Greenplum 6 (30 fields) records to `LogEntry`.

use super::text::{field_limit, opt_text, parse_prefixed, text, utf8_floor};
use super::time::parse_log_time;
use super::{LogEntry, Parsed, TAIL_RESERVE};
use csv_core::{ReadFieldResult, ReadRecordResult, Reader, ReaderBuilder, Terminator};

/// Fields kept per record; more means the record is bad anyway (the widest layout has 30).
const MAX_FIELDS: usize = 32;
/// Where the bytes of a field past its budget go (read and forgotten).
const SCRATCH_BYTES: usize = 8 * 1024;
/// The record buffer starts this big and doubles up to the cap plus the reserve.
const INITIAL_BUFFER: usize = 8 * 1024;

const fn mask(fields: &[usize]) -> u64 {
    let mut m = 0;
    let mut i = 0;
    while i < fields.len() {
        m |= 1 << fields[i];
        i += 1;
    }
    m
}

/// The PostgreSQL fields a `LogEntry` uses (0-based; the same indices in the 23, 24 and 26
/// field layouts). The others (hint, context, internal_query, …) are read past without
/// keeping a byte, so a huge PL/pgSQL context never spends the budget of the statement.
pub(crate) const POSTGRES_FIELDS: u64 = mask(&[0, 1, 2, 3, 5, 6, 11, 12, 13, 14, 19, 22, 23, 25]);
/// The same for the Greenplum 6 layout.
pub(crate) const GREENPLUM_FIELDS: u64 = mask(&[0, 1, 2, 3, 9, 10, 11, 16, 17, 18, 19, 24]);

/// A complete record as the splitter hands it over: field texts (already unquoted) and where
/// it lies in the file.
pub(crate) struct RawRecord<'a> {
    pub start: u64,
    pub end: u64,
    buf: &'a [u8],
    ends: &'a [usize],
    /// Bit i set: field i was cut at its budget (its end may split a character).
    cut: u64,
    /// Fields seen, which may exceed the fields kept (`ends.len()`).
    pub fields: usize,
    pub truncated: bool,
}

impl RawRecord<'_> {
    pub fn was_cut(&self, i: usize) -> bool {
        self.cut & (1 << i) != 0
    }

    /// A number field; a cut one would be a wrong number, so it is none.
    pub fn number(&self, i: usize, prefix: &[u8]) -> Option<i64> {
        if self.was_cut(i) {
            return None;
        }
        parse_prefixed(self.field(i), prefix)
    }

    pub fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let f = &self.buf[start..self.ends[i]];
        if self.cut & (1 << i) != 0 {
            &f[..utf8_floor(f)]
        } else {
            f
        }
    }
}

/// Big fields that are not kept are cut out of the buffer once complete (small ones are left,
/// moving them would cost more than they weigh).
const COMPACT_MIN: usize = 256;

pub(crate) struct CsvSplitter {
    reader: Reader,
    cap: usize,
    /// Bit i set: field i is kept.
    keep: u64,
    /// Field text of the current record, back to back; `buf.len()` is what is allocated and
    /// `used` what is filled (csv-core writes into caller-provided slices).
    buf: Vec<u8>,
    used: usize,
    /// End of each complete field in `buf`; the first `nends` are valid.
    ends: [usize; MAX_FIELDS],
    nends: usize,
    /// Fields seen, including those past `MAX_FIELDS`.
    fields: usize,
    /// Mirror of csv-core's private count of bytes written for the record by `read_record`,
    /// which the field ends it returns are relative to.
    csv_pos: usize,
    /// The current field is read on with `read_field` into `scratch` and forgotten: it reached
    /// its budget, or lies past `MAX_FIELDS`.
    discarding: bool,
    cut: u64,
    truncated: bool,
    scratch: Box<[u8]>,
    in_record: bool,
    record_start: u64,
    /// Absolute offset of the next byte pushed.
    pos: u64,
}

impl CsvSplitter {
    pub fn new(start_offset: u64, cap: usize, keep: u64) -> Self {
        // PostgreSQL ends records with `\n` only; a lone `\r` is data (csv-core's default would
        // also end records on it).
        let reader = ReaderBuilder::new()
            .terminator(Terminator::Any(b'\n'))
            .build();
        Self {
            reader,
            cap,
            keep,
            buf: vec![0; INITIAL_BUFFER.min(cap + TAIL_RESERVE)],
            used: 0,
            ends: [0; MAX_FIELDS],
            nends: 0,
            fields: 0,
            csv_pos: 0,
            discarding: false,
            cut: 0,
            truncated: false,
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            in_record: false,
            record_start: start_offset,
            pos: start_offset,
        }
    }

    pub fn committed_offset(&self) -> u64 {
        if self.in_record {
            self.record_start
        } else {
            self.pos
        }
    }

    pub fn pending_bytes(&self) -> usize {
        if self.in_record {
            self.used
        } else {
            0
        }
    }

    pub fn retained_capacity(&self) -> usize {
        self.buf.len() + self.scratch.len()
    }

    fn field_start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    fn kept(&self, i: usize) -> bool {
        i < MAX_FIELDS && self.keep & (1 << i) != 0
    }

    /// Removes the bytes of the complete fields `from..nends` that are big and not kept.
    fn compact(&mut self, from: usize) {
        for i in from..self.nends {
            let (start, end) = (self.field_start(i), self.ends[i]);
            if end - start >= COMPACT_MIN && !self.kept(i) {
                let gone = end - start;
                self.buf.copy_within(end..self.used, start);
                self.used -= gone;
                for e in &mut self.ends[i..self.nends] {
                    *e -= gone;
                }
            }
        }
    }

    pub fn push(&mut self, mut input: &[u8], on_record: &mut impl FnMut(RawRecord<'_>)) {
        while !input.is_empty() {
            if !self.in_record {
                // Blank lines between records carry nothing; skipping them here makes a
                // record's start offset its first byte.
                let blank = input.iter().take_while(|&&b| b == b'\n').count();
                input = &input[blank..];
                self.pos += blank as u64;
                if input.is_empty() {
                    break;
                }
                self.in_record = true;
                self.record_start = self.pos;
                self.used = 0;
                self.nends = 0;
                self.fields = 0;
                self.cut = 0;
                self.truncated = false;
                self.discarding = false;
            }
            // csv-core reads an empty input as the end of the file, so it never gets one.
            let record_end = if self.discarding {
                let (result, nin, nout) = self.reader.read_field(input, &mut self.scratch);
                input = &input[nin..];
                self.pos += nin as u64;
                if nout > 0 && self.kept(self.nends) {
                    // Only now is the field known to be cut: csv-core also reports a full output
                    // when the field's text fits exactly and its closing quote is still ahead.
                    self.cut |= 1 << self.nends;
                    self.truncated = true;
                }
                match result {
                    ReadFieldResult::Field { record_end } => {
                        if self.nends < MAX_FIELDS {
                            self.ends[self.nends] = self.used;
                            self.nends += 1;
                            self.discarding = false;
                        }
                        self.fields += 1;
                        record_end
                    }
                    ReadFieldResult::InputEmpty | ReadFieldResult::OutputFull => false,
                    ReadFieldResult::End => break,
                }
            } else {
                let current = self.nends;
                let limit = field_limit(self.field_start(current), self.cap);
                if self.used == self.buf.len() && self.buf.len() < limit {
                    // limit never exceeds cap + TAIL_RESERVE, so this always grows.
                    let grown = (self.buf.len() * 2).min(self.cap + TAIL_RESERVE);
                    self.buf.resize(grown, 0);
                }
                let end = self.buf.len().min(limit);
                let (base_used, base_csv) = (self.used, self.csv_pos);
                let (result, nin, nout, nend) = self.reader.read_record(
                    input,
                    &mut self.buf[self.used..end],
                    &mut self.ends[self.nends..],
                );
                input = &input[nin..];
                self.pos += nin as u64;
                self.used += nout;
                for e in &mut self.ends[self.nends..self.nends + nend] {
                    *e = base_used + (*e - base_csv);
                }
                self.nends += nend;
                self.fields += nend;
                self.csv_pos = match result {
                    ReadRecordResult::Record => 0,
                    _ => base_csv + nout,
                };
                self.compact(current);
                match result {
                    ReadRecordResult::InputEmpty => false,
                    ReadRecordResult::OutputFull => {
                        // The limit of this call was that of the field it began in; the field
                        // now being read may have its own, larger one.
                        let field = self.nends;
                        if self.used >= field_limit(self.field_start(field), self.cap) {
                            // The field being read is at its budget: the rest of it is read and
                            // forgotten (and a field not kept is forgotten whole).
                            if !self.kept(field) {
                                self.used = self.field_start(field);
                            }
                            self.discarding = true;
                        }
                        // Otherwise the buffer grows on the next turn.
                        false
                    }
                    ReadRecordResult::OutputEndsFull => {
                        // More fields than any layout has: count the rest, keep nothing.
                        self.discarding = true;
                        false
                    }
                    ReadRecordResult::Record => true,
                    ReadRecordResult::End => break,
                }
            };
            if record_end {
                self.in_record = false;
                on_record(RawRecord {
                    start: self.record_start,
                    end: self.pos,
                    buf: &self.buf[..self.used],
                    ends: &self.ends[..self.nends],
                    cut: self.cut,
                    fields: self.fields,
                    truncated: self.truncated,
                });
            }
        }
    }
}

fn bad(raw: &RawRecord<'_>, reason: String) -> Parsed {
    Parsed::Bad {
        offset_start: raw.start,
        offset_end: raw.end,
        reason,
    }
}

fn sql_state(b: &[u8]) -> Option<String> {
    (b != b"00000").then(|| opt_text(b)).flatten()
}

/// A PostgreSQL csvlog record: 23 fields (PG 12), 24 (PG 13, + backend_type) or 26 (PG 14–17,
/// + leader_pid, query_id).
pub(crate) fn postgres_entry(raw: &RawRecord<'_>) -> Parsed {
    let (backend_type, query_id) = match raw.fields {
        23 => (None, None),
        24 => (Some(23), None),
        26 => (Some(23), Some(25)),
        30 => {
            return bad(
                raw,
                "a csvlog record has 30 fields, the Greenplum layout: read this log as \
                 greenplum-csvlog"
                    .into(),
            )
        }
        n => {
            return bad(
                raw,
                format!(
                    "a csvlog record has {n} fields; PostgreSQL 12 writes 23, 13 writes 24, \
                     14 to 17 write 26"
                ),
            )
        }
    };
    let log_time = match parse_log_time(raw.field(0)) {
        Ok(t) => t,
        Err(reason) => return bad(raw, reason),
    };
    Parsed::Entry(LogEntry {
        offset_start: raw.start,
        offset_end: raw.end,
        log_time,
        user: opt_text(raw.field(1)),
        database: opt_text(raw.field(2)),
        pid: raw.number(3, b""),
        session_id: text(raw.field(5)),
        line_num: raw.number(6, b""),
        command_count: None,
        segment: None,
        severity: text(raw.field(11)),
        sql_state: sql_state(raw.field(12)),
        message: text(raw.field(13)),
        detail: opt_text(raw.field(14)),
        statement: opt_text(raw.field(19)),
        application_name: opt_text(raw.field(22)),
        backend_type: backend_type.and_then(|i| opt_text(raw.field(i))),
        query_id: query_id
            .and_then(|i| raw.number(i, b""))
            .filter(|&q| q != 0),
        truncated: raw.truncated,
        message_truncated: raw.was_cut(13),
        statement_truncated: raw.was_cut(19),
    })
}

/// A Greenplum 6 server csvlog record (30 fields, gp_toolkit's `__gp_log_master_ext` order).
/// Segment lines are emitted like coordinator lines, with `segment` set; the statement builder
/// keeps only the coordinator's (`seg-1`).
pub(crate) fn greenplum_entry(raw: &RawRecord<'_>) -> Parsed {
    if raw.fields != 30 {
        return bad(
            raw,
            format!(
                "a Greenplum csvlog record has {} fields; Greenplum 6 writes 30",
                raw.fields
            ),
        );
    }
    let log_time = match parse_log_time(raw.field(0)) {
        Ok(t) => t,
        Err(reason) => return bad(raw, reason),
    };
    Parsed::Entry(LogEntry {
        offset_start: raw.start,
        offset_end: raw.end,
        log_time,
        user: opt_text(raw.field(1)),
        database: opt_text(raw.field(2)),
        pid: raw.number(3, b"p"),
        session_id: text(raw.field(9)),
        line_num: None,
        command_count: raw.number(10, b"cmd"),
        segment: raw.number(11, b"seg").and_then(|s| i32::try_from(s).ok()),
        severity: text(raw.field(16)),
        sql_state: sql_state(raw.field(17)),
        message: text(raw.field(18)),
        detail: opt_text(raw.field(19)),
        statement: opt_text(raw.field(24)),
        application_name: None,
        backend_type: None,
        query_id: None,
        truncated: raw.truncated,
        message_truncated: raw.was_cut(18),
        statement_truncated: raw.was_cut(24),
    })
}
