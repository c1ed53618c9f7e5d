//! The export file: RFC 4180 CSV with a header in the task's language, an optional UTF-8 BOM
//! and optional gzip, produced incrementally so the caller can upload it part by part.

use chrono::{DateTime, Datelike, Timelike, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use gpdiag_core::{FileOptions, QueryRecord};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// The buffer encoded bytes collect in until the caller takes them; shared because the CSV
/// writer owns its output and offers no mutable access to it.
#[derive(Clone, Default)]
struct Ready(Arc<Mutex<Vec<u8>>>);

impl Ready {
    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Write for Ready {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Output {
    Plain(Ready),
    Gzip(GzEncoder<Ready>),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Plain(v) => v.write(buf),
            Output::Gzip(gz) => gz.write(buf),
        }
    }

    /// Deliberately not forwarded to gzip: a gzip flush ends a deflate block early and would
    /// cost compression every time the caller takes a part.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub struct CsvEncoder {
    writer: csv::Writer<Output>,
    ready: Ready,
    rows: u64,
}

/// UTC with milliseconds, ISO 8601.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

impl CsvEncoder {
    /// Starts a file: the BOM if asked for, then the translated header row.
    pub fn new(options: FileOptions) -> io::Result<Self> {
        let ready = Ready::default();
        let mut output = if options.gzip {
            Output::Gzip(GzEncoder::new(ready.clone(), Compression::fast()))
        } else {
            Output::Plain(ready.clone())
        };
        if options.bom {
            output.write_all("\u{feff}".as_bytes())?;
        }
        let mut writer = csv::WriterBuilder::new()
            // RFC 4180 line ends; fields with quotes, commas or line breaks are quoted.
            .terminator(csv::Terminator::CRLF)
            .from_writer(output);
        writer.write_record(options.lang.header())?;
        Ok(Self {
            writer,
            ready,
            rows: 0,
        })
    }

    pub fn write(&mut self, r: &QueryRecord) -> io::Result<()> {
        // Both on the stack: an export writes millions of rows, and chrono's formatter parses
        // its pattern again for every one (a tenth of the whole export's CPU).
        let mut time = [0u8; 24];
        let chrono_formatted;
        let start = match format_time(r.start_time, &mut time) {
            Some(s) => s,
            None => {
                chrono_formatted = r.start_time.format(TIME_FORMAT).to_string();
                chrono_formatted.as_bytes()
            }
        };
        let mut digits = [0u8; 20];
        let duration = format_i64(r.duration_ms, &mut digits);
        self.writer.write_record([
            r.query_id.as_bytes(),
            r.session_id.as_bytes(),
            r.database.as_bytes(),
            r.user.as_bytes(),
            r.status.as_str().as_bytes(),
            start,
            duration,
            r.sql.as_bytes(),
        ])?;
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes encoded so far and not yet taken.
    pub fn ready_len(&mut self) -> io::Result<usize> {
        self.writer.flush()?;
        Ok(self.ready.bytes().len())
    }

    /// Takes the bytes encoded so far.
    pub fn take(&mut self) -> io::Result<Vec<u8>> {
        self.writer.flush()?;
        let mut ready = self.ready.bytes();
        // The next part is about as long as this one: room for it now, instead of growing
        // (and copying) the buffer step by step again, and overshooting to twice the size.
        let next = Vec::with_capacity(ready.len());
        Ok(std::mem::replace(&mut *ready, next))
    }

    /// Ends the file and returns its last bytes.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        let output = self
            .writer
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?;
        if let Output::Gzip(gz) = output {
            gz.finish()?;
        }
        Ok(std::mem::take(&mut *self.ready.bytes()))
    }
}

/// `t` as `TIME_FORMAT` writes it, for years 0 to 9999 (`None` otherwise, and for a leap
/// second, which chrono spells its own way).
fn format_time(t: DateTime<Utc>, buf: &mut [u8; 24]) -> Option<&[u8]> {
    let year = t.year();
    let millis = t.timestamp_subsec_millis();
    if !(0..=9999).contains(&year) || millis > 999 {
        return None;
    }
    let two = |buf: &mut [u8; 24], at: usize, v: u32| {
        buf[at] = b'0' + (v / 10) as u8;
        buf[at + 1] = b'0' + (v % 10) as u8;
    };
    let year = year as u32;
    two(buf, 0, year / 100);
    two(buf, 2, year % 100);
    buf[4] = b'-';
    two(buf, 5, t.month());
    buf[7] = b'-';
    two(buf, 8, t.day());
    buf[10] = b'T';
    two(buf, 11, t.hour());
    buf[13] = b':';
    two(buf, 14, t.minute());
    buf[16] = b':';
    two(buf, 17, t.second());
    buf[19] = b'.';
    buf[20] = b'0' + (millis / 100) as u8;
    two(buf, 21, millis % 100);
    buf[23] = b'Z';
    Some(&buf[..])
}

/// `n` in decimal, as `to_string` writes it.
fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut v = n.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use gpdiag_core::{Lang, QueryStatus};
    use std::io::Read;

    fn record(i: usize, sql: &str) -> QueryRecord {
        QueryRecord {
            instance: "gp".into(),
            query_id: format!("q{i}"),
            session_id: "s".into(),
            database: "db".into(),
            user: "u".into(),
            start_time: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            duration_ms: 42,
            status: QueryStatus::Finished,
            error: None,
            sql: sql.into(),
            plan_json: None,
            plan_text: None,
            rows: None,
            source: "t".into(),
            ..Default::default()
        }
    }

    fn encode(options: FileOptions, records: &[QueryRecord]) -> Vec<u8> {
        let mut e = CsvEncoder::new(options).unwrap();
        let mut out = Vec::new();
        for r in records {
            e.write(r).unwrap();
            // Take parts at odd moments: the concatenation must still be one valid file.
            if e.rows().is_multiple_of(3) {
                out.extend(e.take().unwrap());
            }
        }
        out.extend(e.finish().unwrap());
        out
    }

    #[test]
    fn multi_line_sql_is_quoted_and_parses_back() {
        let sql = "select 'a,b', \"q\"\nfrom t\r\nwhere x = 1";
        let bytes = encode(
            FileOptions {
                lang: Lang::Zh,
                ..FileOptions::default()
            },
            &[record(1, sql), record(2, "select 2")],
        );
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("查询ID,会话ID,"), "{text}");
        assert!(text.contains("\r\n"));
        let mut reader = csv::Reader::from_reader(&bytes[..]);
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            Lang::Zh.header()
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][7], sql);
        assert_eq!(&rows[0][5], "2023-11-14T22:13:20.123Z");
        assert_eq!(&rows[0][6], "42");
        assert_eq!(&rows[0][4], "finished");
    }

    #[test]
    fn times_and_durations_are_written_as_chrono_and_to_string_write_them() {
        let mut buf = [0u8; 24];
        for ms in [
            0i64,
            1,
            999,
            1_000,
            1_700_000_000_123,
            1_767_225_600_000,
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
            -62_167_219_200_000, // 0000-01-01T00:00:00.000Z
            951_782_400_050,     // 2000-02-29T00:00:00.050Z
        ] {
            let t = Utc.timestamp_millis_opt(ms).unwrap();
            let ours = format_time(t, &mut buf).map(|b| String::from_utf8(b.to_vec()).unwrap());
            assert_eq!(ours, Some(t.format(TIME_FORMAT).to_string()), "{ms}");
        }
        // Out of range: the caller falls back to chrono.
        let far = Utc.timestamp_millis_opt(253_402_300_800_000).unwrap();
        assert_eq!(format_time(far, &mut buf), None);
        let mut digits = [0u8; 20];
        for n in [0i64, 7, 42, 10, 1_000, -1, -90, i64::MAX, i64::MIN] {
            assert_eq!(format_i64(n, &mut digits), n.to_string().as_bytes());
        }
    }

    #[test]
    fn bom_and_gzip_wrap_the_same_csv() {
        let records: Vec<_> = (0..100).map(|i| record(i, "select 1")).collect();
        let plain = encode(FileOptions::default(), &records);
        let bom = encode(
            FileOptions {
                bom: true,
                ..FileOptions::default()
            },
            &records,
        );
        assert_eq!(&bom[..3], b"\xEF\xBB\xBF");
        assert_eq!(&bom[3..], &plain[..]);
        let gz = encode(
            FileOptions {
                gzip: true,
                bom: true,
                ..FileOptions::default()
            },
            &records,
        );
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, bom);
        assert!(gz.len() < plain.len() / 4);
    }
}
