//! The export file: RFC 4180 CSV with a header in the task's language, an optional UTF-8 BOM
//! and optional gzip, produced incrementally so the caller can upload it part by part.

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
        let start = r.start_time.format(TIME_FORMAT).to_string();
        let duration = r.duration_ms.to_string();
        self.writer.write_record([
            r.query_id.as_str(),
            r.session_id.as_str(),
            r.database.as_str(),
            r.user.as_str(),
            r.status.as_str(),
            start.as_str(),
            duration.as_str(),
            r.sql.as_str(),
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
        Ok(std::mem::take(&mut *self.ready.bytes()))
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
