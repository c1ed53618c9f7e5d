//! Data on standard output: aligned tables for people, JSON and CSV for programs.

use super::{Exit, Failure, Outcome};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for reading.
    Table,
    /// The API's own JSON objects, as one array.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// Formats without CSV, for commands whose answers are nested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableOrJson {
    Table,
    Json,
}

/// A failed write to standard output. A closed pipe (`gpdiag … | head`) ends the command
/// quietly, as it would end a program killed by SIGPIPE.
pub fn stdout_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::new(Exit::BrokenPipe, String::new())
    } else {
        Failure::io("cannot write to standard output", e)
    }
}

/// Writes `value` as indented JSON and a newline.
pub fn print_json(value: &impl serde::Serialize) -> Outcome {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(|e| stdout_failure(std::io::Error::from(e)))?;
    writeln!(out).map_err(stdout_failure)?;
    out.flush().map_err(stdout_failure)
}

/// One line of a table cell: control characters (line breaks, tabs) become spaces, so a row
/// stays one line whatever the SQL holds.
pub fn cell(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` cut to `max` characters, ending in `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    let one_line: String = cell(text).split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Left-aligned columns two spaces apart, the header first; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, value) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(value.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |values: Vec<&str>| {
        let last = values.len().saturating_sub(1);
        let mut text = String::new();
        for (i, value) in values.into_iter().enumerate() {
            text.push_str(value);
            if i < last {
                let pad = widths[i] - value.chars().count() + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Writes `text` to standard output.
pub fn print_text(text: &str) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(stdout_failure)?;
    out.flush().map_err(stdout_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_characters_and_keep_rows_on_one_line() {
        let text = table(
            &["ID", "SQL"],
            &[
                vec!["1".into(), cell("select 1\nfrom t")],
                vec!["中文123".into(), "x".into()],
            ],
        );
        assert_eq!(text, "ID     SQL\n1      select 1 from t\n中文123  x\n");
    }

    #[test]
    fn long_text_is_shortened_to_one_line() {
        assert_eq!(shorten("select  1\n\tfrom t", 80), "select 1 from t");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abcd", 4), "abcd");
    }
}
