//! `--start` and `--end`: the API's own `yyyy-MM-ddTHH:mmZ` (and `…:ssZ`), RFC 3339 with any
//! offset, a date alone (midnight UTC), `now`, and times relative to now such as `-6h`, `-30m`,
//! `-2d`, `-1h30m` or `now-15m`. All become the UTC form the API takes.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, SubsecRound, Timelike, Utc};

/// The accepted forms, for error messages and `--help`.
pub const FORMS: &str = "yyyy-MM-ddTHH:mmZ, RFC 3339 (2026-01-02T08:00:00+08:00), a date (2026-01-02), now, or relative to now: -6h, -30m, -2d, -1h30m (units s, m, h, d, w)";

/// Parses a time given on the command line, relative forms against `now`.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = text.trim();
    let bad = || format!("cannot read the time {text:?}: expected {FORMS}");
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    let relative = s
        .strip_prefix("now")
        .or_else(|| s.strip_prefix("NOW"))
        .unwrap_or(s);
    if let Some(ago) = relative.strip_prefix('-') {
        return now
            .checked_sub_signed(span(ago).ok_or_else(bad)?)
            .ok_or_else(bad);
    }
    for format in ["%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%SZ"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc());
    }
    Err(bad())
}

/// `6h`, `90m`, `1h30m`, `2d`, `1w`: one or more number-unit pairs, not empty.
fn span(text: &str) -> Option<Duration> {
    let mut total = Duration::zero();
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let part = match unit {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            _ => None,
        }?;
        total = total.checked_add(&part)?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Some(total)
}

/// The API's request form: `yyyy-MM-ddTHH:mmZ` when the time falls on a minute (the
/// documented form), else `yyyy-MM-ddTHH:mm:ssZ`, which gpdiag also takes. Fractions of a
/// second are dropped.
pub fn api(t: DateTime<Utc>) -> String {
    if t.second() == 0 {
        t.format("%Y-%m-%dT%H:%MZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// Both ends of a window, checked to be in order; the API forms.
pub fn window(start: &str, end: &str, now: DateTime<Utc>) -> Result<(String, String), String> {
    let (s, e) = (parse(start, now)?, parse(end, now)?);
    // Compared as sent, so a window that is empty after dropping fractions is refused here.
    let (s_text, e_text) = (api(s), api(e));
    if s.trunc_subsecs(0) >= e.trunc_subsecs(0) {
        return Err(format!(
            "--start ({s_text}) must be before --end ({e_text})"
        ));
    }
    Ok((s_text, e_text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 4, 12, 30, 15).unwrap()
    }

    fn check(input: &str, expected: &str) {
        let t = parse(input, now()).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(api(t), expected, "{input}");
    }

    #[test]
    fn every_documented_form_is_read() {
        check("now", "2026-03-04T12:30:15Z");
        check("NOW", "2026-03-04T12:30:15Z");
        check("-6h", "2026-03-04T06:30:15Z");
        check("-30m", "2026-03-04T12:00:15Z");
        check("-2d", "2026-03-02T12:30:15Z");
        check("-1w", "2026-02-25T12:30:15Z");
        check("-15s", "2026-03-04T12:30Z");
        check("-1h30m", "2026-03-04T11:00:15Z");
        check("now-15m", "2026-03-04T12:15:15Z");
        check("2022-05-07T06:59Z", "2022-05-07T06:59Z");
        check("2022-05-07T06:59:30Z", "2022-05-07T06:59:30Z");
        check("2022-05-07T08:59:00+02:00", "2022-05-07T06:59Z");
        check("2022-05-07T06:59:30.999Z", "2022-05-07T06:59:30Z");
        check("2022-05-07", "2022-05-07T00:00Z");
        check("  -6h ", "2026-03-04T06:30:15Z");
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for bad in [
            "",
            "-",
            "-6",
            "-h",
            "-6x",
            "-6h-",
            "+6h",
            "yesterday",
            "2022-05-07 06:59",
            "2022-13-07T06:59Z",
            "-99999999999999999w",
        ] {
            let e = parse(bad, now()).unwrap_err();
            assert!(e.contains("-6h"), "{bad}: {e}");
        }
    }

    #[test]
    fn windows_must_be_in_order() {
        assert_eq!(
            window("-6h", "now", now()).unwrap(),
            (
                "2026-03-04T06:30:15Z".to_owned(),
                "2026-03-04T12:30:15Z".to_owned()
            )
        );
        let e = window("now", "-1h", now()).unwrap_err();
        assert!(e.contains("must be before"), "{e}");
        assert!(window("now", "now", now()).is_err());
    }
}
