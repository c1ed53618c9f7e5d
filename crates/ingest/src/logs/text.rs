//! Field-level helpers shared by the log readers: the per-record byte budget, cuts on UTF-8
//! boundaries, lossy text and integer parsing.

/// Bytes a record may keep beyond its cap, so that the short fields after a huge one
/// (application_name, backend_type, query_id, …) survive the cut.
pub const TAIL_RESERVE: usize = 8 * 1024;

/// What each field that starts after the cap was reached may keep (out of `TAIL_RESERVE`).
pub const TAIL_FIELD: usize = 256;

/// The buffer index up to which a field starting at `start` may grow, in a record capped at
/// `cap`: the fields share the cap, and every field, however late, may take `TAIL_FIELD` bytes
/// beyond it until the reserve is spent too. So a huge message leaves room for the short
/// fields after it, and the whole record stays within `cap + TAIL_RESERVE`.
pub(crate) fn field_limit(start: usize, cap: usize) -> usize {
    cap.max(start + TAIL_FIELD).min(cap + TAIL_RESERVE)
}

/// The length of the longest prefix of `b` that does not end inside a UTF-8 sequence, so a cut
/// never splits a character. Invalid bytes are left alone (lossy conversion handles them).
pub(crate) fn utf8_floor(b: &[u8]) -> usize {
    let n = b.len();
    // A sequence is at most 4 bytes, so only the last 4 bytes can hold an unfinished one.
    for back in 1..=n.min(4) {
        let c = b[n - back];
        if c & 0xC0 == 0x80 {
            continue;
        }
        let need = match c {
            0xF0..=0xF7 => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if back >= need { n } else { n - back };
    }
    n
}

/// Field bytes as text; invalid UTF-8 becomes U+FFFD (a log may mix encodings).
pub(crate) fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// `None` for an empty field (csvlog writes NULL and `""` alike for the fields we keep).
pub(crate) fn opt_text(b: &[u8]) -> Option<String> {
    (!b.is_empty()).then(|| text(b))
}

/// A decimal integer with an optional sign, nothing else; `None` on anything odd or overflow.
pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses too.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// A number field after a fixed prefix (`p123`, `con12`, `cmd5`, `seg-1`); the prefix is
/// optional so that a bare number is read too.
pub(crate) fn parse_prefixed(b: &[u8], prefix: &[u8]) -> Option<i64> {
    parse_i64(b.strip_prefix(prefix).unwrap_or(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_floor_never_splits_a_character() {
        let s = "aé日🐘".as_bytes();
        let whole = s.len();
        for cut in 0..=whole {
            let n = utf8_floor(&s[..cut]);
            assert!(std::str::from_utf8(&s[..n]).is_ok(), "cut {cut} → {n}");
            assert!(cut - n < 4);
        }
        assert_eq!(utf8_floor(s), whole);
        assert_eq!(utf8_floor(&s[..whole - 1]), whole - 4);
        // Invalid input is left to the lossy conversion.
        assert_eq!(utf8_floor(b"\x80\x80"), 2);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(
            parse_i64(b"-6952493388651169097"),
            Some(-6952493388651169097)
        );
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b"12a"), None);
        assert_eq!(parse_prefixed(b"seg-1", b"seg"), Some(-1));
        assert_eq!(parse_prefixed(b"cmd5", b"cmd"), Some(5));
        assert_eq!(parse_prefixed(b"42", b"p"), Some(42));
    }

    #[test]
    fn field_budget() {
        assert_eq!(field_limit(0, 1000), 1000);
        assert_eq!(field_limit(1000 - TAIL_FIELD, 1000), 1000);
        assert_eq!(field_limit(999, 1000), 999 + TAIL_FIELD);
        assert_eq!(field_limit(1000, 1000), 1000 + TAIL_FIELD);
        assert_eq!(field_limit(1000 + TAIL_RESERVE, 1000), 1000 + TAIL_RESERVE);
    }
}
