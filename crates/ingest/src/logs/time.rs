//! Log timestamps: `YYYY-MM-DD HH:MM:SS[.fraction] ZONE` as PostgreSQL and Greenplum write
//! them (`%m`), in UTC, GMT, Z or a numeric offset.

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// Parses a log timestamp. Zone abbreviations other than UTC/GMT/UCT/Z are refused: they are
/// ambiguous (`CST` is three different zones) and PostgreSQL writes whatever `log_timezone`
/// abbreviates to, so the operator is told to log in UTC instead of us guessing.
pub(crate) fn parse_log_time(b: &[u8]) -> Result<DateTime<Utc>, String> {
    let bad = || {
        format!(
            "log time {:?} is not YYYY-MM-DD HH:MM:SS[.fff] ZONE",
            String::from_utf8_lossy(&b[..b.len().min(64)])
        )
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return Err(bad());
    }
    if b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return Err(bad());
    };
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            // Digits past nanoseconds are dropped; PostgreSQL writes 3, Greenplum 6.
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return Err(bad());
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let zone = match &b[i..] {
        [b' ', rest @ ..] => rest,
        rest => rest,
    };
    let offset_seconds = parse_zone(zone).ok_or_else(|| {
        format!(
            "log time {:?} has the time zone {:?}, which gpdiag cannot resolve (abbreviations are \
             ambiguous): set log_timezone = 'UTC' on the server",
            String::from_utf8_lossy(&b[..b.len().min(64)]),
            String::from_utf8_lossy(&zone[..zone.len().min(16)]),
        )
    })?;
    let local = NaiveDate::from_ymd_opt(year as i32, month, day)
        .and_then(|d| d.and_hms_nano_opt(hour, minute, second, nanos))
        .ok_or_else(bad)?;
    Ok(local.and_utc() - Duration::seconds(offset_seconds))
}

/// Seconds east of UTC for `UTC`, `GMT`, `UCT`, `Z`, `+03`, `-0530`, `+05:30`, `+05:30:15`.
fn parse_zone(z: &[u8]) -> Option<i64> {
    match z {
        b"UTC" | b"GMT" | b"UCT" | b"Z" => return Some(0),
        _ => {}
    }
    let (sign, rest) = match z.first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let two = |p: &[u8]| -> Option<i64> {
        match p {
            [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
                Some(i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            }
            _ => None,
        }
    };
    let (h, m, s) = match rest.len() {
        2 => (two(rest)?, 0, 0),
        4 => (two(&rest[..2])?, two(&rest[2..])?, 0),
        5 if rest[2] == b':' => (two(&rest[..2])?, two(&rest[3..])?, 0),
        6 => (two(&rest[..2])?, two(&rest[2..4])?, two(&rest[4..])?),
        8 if rest[2] == b':' && rest[5] == b':' => {
            (two(&rest[..2])?, two(&rest[3..5])?, two(&rest[6..])?)
        }
        _ => return None,
    };
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        parse_log_time(s.as_bytes()).unwrap()
    }

    #[test]
    fn zones() {
        let utc =
            Utc.with_ymd_and_hms(2026, 12, 4, 19, 21, 35).unwrap() + Duration::milliseconds(724);
        assert_eq!(t("2026-12-04 19:21:35.724 UTC"), utc);
        assert_eq!(t("2026-12-04 19:21:35.724 GMT"), utc);
        assert_eq!(t("2026-12-04 19:21:35.724 Z"), utc);
        assert_eq!(t("2026-12-04 19:21:35.724Z"), utc);
        assert_eq!(t("2026-12-04 22:21:35.724 +03"), utc);
        assert_eq!(t("2026-12-04 13:51:35.724 -0530"), utc);
        assert_eq!(t("2026-12-05 00:51:35.724 +05:30"), utc);
        assert_eq!(t("2026-12-04 19:21:35.724000 UTC"), utc);
        assert_eq!(
            t("2026-12-04 19:21:35 UTC"),
            utc - Duration::milliseconds(724)
        );
        // Crossing midnight and a month end.
        assert_eq!(
            t("2027-01-01 01:00:00.000 +02"),
            Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).unwrap()
        );
    }

    #[test]
    fn refusals() {
        let e = parse_log_time(b"2026-12-04 19:21:35.724 CET").unwrap_err();
        assert!(e.contains("log_timezone = 'UTC'"), "{e}");
        assert!(e.contains("CET"), "{e}");
        for bad in [
            "",
            "2026-12-04",
            "2026-13-04 19:21:35.724 UTC",
            "2026-02-30 19:21:35.724 UTC",
            "2026-12-04 25:21:35.724 UTC",
            "2026-12-04 19:21:35. UTC",
            "2026-12-04T19:21:35.724 UTC",
            "2026-12-04 19:21:35.724 +3",
            "2026-12-04 19:21:35.724 +24",
            "2026-12-04 19:21:35.724 +05:60",
        ] {
            assert!(parse_log_time(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
