//! Percent-encoding and strict form decoding of query strings and form bodies, as the gpdb OpenAPI uses them.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but `A-Z a-z 0-9 - _ . ~` is escaped: the `enc()` of the signature
/// specs, which all three SDK families produce (spec §4).
const ENC_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Longest parameter name quoted back in an error message; the name comes from
/// the client and could be arbitrarily long.
const MAX_CONTEXT_CHARS: usize = 64;

/// Percent-encodes the UTF-8 bytes of `s`, leaving only `A-Z a-z 0-9 - _ . ~`
/// bare, with upper-case hex (`*` → `%2A`, space → `%20`, `+` → `%2B`).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, ENC_SET).to_string()
}

/// Renders `enc(name)=enc(value)` pairs joined by `&`, in the given order.
///
/// This is RFC 3986 style (space → `%20`), as old core and pop-core send; the
/// server decodes it and the Tea SDK's `+` style alike.
pub fn encode_query(params: &[(String, String)]) -> String {
    encode_pairs(params)
}

/// [`encode_query`] over any sequence of pairs, so the signers can render a
/// sorted or filtered view without cloning it first.
pub(crate) fn encode_pairs<'a>(params: impl IntoIterator<Item = &'a (String, String)>) -> String {
    let mut out = String::new();
    for (i, (name, value)) in params.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// Which half of a `name=value` segment a [`FormError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormPart {
    Name,
    Value,
}

/// Why a query string or form body was rejected.
///
/// `parameter` is the decoded parameter name when the problem is in a value.
/// When the name itself is broken it holds the raw (still encoded) name text,
/// shortened, so the client can still see which segment was bad. Values are
/// never copied into the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hex digits (`%`, `%4`, `%zz`).
    BadPercentEncoding { part: FormPart, parameter: String },
    /// The bytes decoded from a name or value are not UTF-8.
    InvalidUtf8 { part: FormPart, parameter: String },
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` quotes and escapes the name, so control characters sent by a
        // client cannot forge lines in a log.
        match self {
            FormError::BadPercentEncoding {
                part: FormPart::Value,
                parameter,
            } => write!(
                f,
                "the value of parameter {parameter:?} contains a '%' that is not followed by two hex digits"
            ),
            FormError::BadPercentEncoding {
                part: FormPart::Name,
                parameter,
            } => write!(
                f,
                "the parameter name {parameter:?} contains a '%' that is not followed by two hex digits"
            ),
            FormError::InvalidUtf8 {
                part: FormPart::Value,
                parameter,
            } => write!(
                f,
                "the value of parameter {parameter:?} is not valid UTF-8 after percent-decoding"
            ),
            FormError::InvalidUtf8 {
                part: FormPart::Name,
                parameter,
            } => write!(
                f,
                "the parameter name {parameter:?} is not valid UTF-8 after percent-decoding"
            ),
        }
    }
}

impl std::error::Error for FormError {}

/// Strictly decodes an `application/x-www-form-urlencoded` query string or body.
///
/// Segments are split on `&` (empty ones skipped) and then on the first `=`; a
/// segment without `=` is a name with an empty value, because old core signs
/// `SignatureType=` and an empty value must count as present. `+` is a space
/// because the Tea SDK encodes with Python's `urlencode`. Unlike the lenient
/// `form_urlencoded` crate, a broken `%` escape or non-UTF-8 result is an
/// error: silently substituting bytes would make the server sign something the
/// client never sent. Wire order and duplicates are kept; the caller decides
/// what a duplicate means.
pub fn decode_form(raw: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let mut out = Vec::new();
    for segment in raw.split(|&b| b == b'&') {
        if segment.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = match segment.iter().position(|&b| b == b'=') {
            Some(i) => (&segment[..i], &segment[i + 1..]),
            None => (segment, &b""[..]),
        };
        let name = decode_component(raw_name).map_err(|kind| {
            kind.into_error(FormPart::Name, shorten(&String::from_utf8_lossy(raw_name)))
        })?;
        let value = decode_component(raw_value)
            .map_err(|kind| kind.into_error(FormPart::Value, shorten(&name)))?;
        out.push((name, value));
    }
    Ok(out)
}

enum DecodeFailure {
    BadPercent,
    Utf8,
}

impl DecodeFailure {
    fn into_error(self, part: FormPart, parameter: String) -> FormError {
        match self {
            DecodeFailure::BadPercent => FormError::BadPercentEncoding { part, parameter },
            DecodeFailure::Utf8 => FormError::InvalidUtf8 { part, parameter },
        }
    }
}

fn decode_component(raw: &[u8]) -> Result<String, DecodeFailure> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                bytes.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&b| hex_digit(b));
                let lo = raw.get(i + 2).and_then(|&b| hex_digit(b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => bytes.push(hi << 4 | lo),
                    _ => return Err(DecodeFailure::BadPercent),
                }
                i += 3;
            }
            b => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| DecodeFailure::Utf8)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_CONTEXT_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn percent_encode_leaves_only_unreserved_bare() {
        let cases = [
            ("", ""),
            ("AZaz09-_.~", "AZaz09-_.~"),
            (" ", "%20"),
            ("+", "%2B"),
            ("*", "%2A"),
            ("/", "%2F"),
            (":", "%3A"),
            ("=&%", "%3D%26%25"),
            ("!'()", "%21%27%28%29"),
            ("中", "%E4%B8%AD"),
            ("é", "%C3%A9"),
        ];
        for (input, expected) in cases {
            assert_eq!(percent_encode(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn percent_encode_spec_keyword_example() {
        assert_eq!(
            percent_encode("select \"a b\" * from t where x~'y' + 1 中文/&="),
            "select%20%22a%20b%22%20%2A%20from%20t%20where%20x~%27y%27%20%2B%201%20%E4%B8%AD%E6%96%87%2F%26%3D"
        );
    }

    #[test]
    fn decode_form_handles_plus_percent_and_empty_values() {
        let decoded =
            decode_form(b"a=1&&b=x+y%2Bz&SignatureType=&flag&c=%e4%b8%ad&=v&d=1=2").unwrap();
        assert_eq!(
            decoded,
            pairs(&[
                ("a", "1"),
                ("b", "x y+z"),
                ("SignatureType", ""),
                ("flag", ""),
                ("c", "中"),
                ("", "v"),
                ("d", "1=2"),
            ])
        );
    }

    #[test]
    fn decode_form_keeps_wire_order_and_duplicates() {
        let decoded = decode_form(b"z=1&a=2&z=3").unwrap();
        assert_eq!(decoded, pairs(&[("z", "1"), ("a", "2"), ("z", "3")]));
    }

    #[test]
    fn decode_form_empty_inputs() {
        assert_eq!(decode_form(b"").unwrap(), vec![]);
        assert_eq!(decode_form(b"&&&").unwrap(), vec![]);
    }

    #[test]
    fn decode_form_both_tea_and_rfc3986_styles_agree() {
        let tea = decode_form(b"Keyword=select+%22a+b%22+%2A+from+t+where+x~%27y%27+%2B+1+%E4%B8%AD%E6%96%87%2F%26%3D").unwrap();
        let rfc = decode_form(b"Keyword=select%20%22a%20b%22%20%2A%20from%20t%20where%20x~%27y%27%20%2B%201%20%E4%B8%AD%E6%96%87%2F%26%3D").unwrap();
        assert_eq!(tea, rfc);
        assert_eq!(tea[0].1, "select \"a b\" * from t where x~'y' + 1 中文/&=");
    }

    #[test]
    fn decode_form_rejects_broken_percent_escapes() {
        for raw in [&b"a=%"[..], b"a=%4", b"a=%zz", b"a=%4g", b"a=x%2"] {
            assert_eq!(
                decode_form(raw),
                Err(FormError::BadPercentEncoding {
                    part: FormPart::Value,
                    parameter: "a".to_owned()
                }),
                "raw {:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(
            decode_form(b"ok=1&b%zz=1"),
            Err(FormError::BadPercentEncoding {
                part: FormPart::Name,
                parameter: "b%zz".to_owned()
            })
        );
        // A name without '=' is still checked.
        assert!(matches!(
            decode_form(b"%"),
            Err(FormError::BadPercentEncoding {
                part: FormPart::Name,
                ..
            })
        ));
    }

    #[test]
    fn decode_form_rejects_invalid_utf8() {
        assert_eq!(
            decode_form(b"Keyword=%FF"),
            Err(FormError::InvalidUtf8 {
                part: FormPart::Value,
                parameter: "Keyword".to_owned()
            })
        );
        // Truncated multi-byte sequence.
        assert!(matches!(
            decode_form(b"k=%E4%B8"),
            Err(FormError::InvalidUtf8 {
                part: FormPart::Value,
                ..
            })
        ));
        // Raw non-UTF-8 bytes on the wire, in a name.
        assert!(matches!(
            decode_form(b"k\xff=1"),
            Err(FormError::InvalidUtf8 {
                part: FormPart::Name,
                ..
            })
        ));
        // Raw UTF-8 (not percent-encoded) is accepted as is.
        assert_eq!(
            decode_form("k=中".as_bytes()).unwrap(),
            pairs(&[("k", "中")])
        );
    }

    #[test]
    fn form_error_messages_name_the_parameter() {
        let err = decode_form(b"DBInstanceId=%zz").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"DBInstanceId\""), "{msg}");
        assert!(msg.contains("two hex digits"), "{msg}");

        let err = decode_form(b"PageSize=%C0").unwrap_err();
        assert!(err.to_string().contains("\"PageSize\""));
        assert!(err.to_string().contains("UTF-8"));

        // Control characters and very long names are neutralised.
        let long = format!("{}%", "n".repeat(200));
        let err = decode_form(long.as_bytes()).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
        let err = decode_form(b"a%0A\nb%=1").unwrap_err();
        assert!(!err.to_string().contains('\n'), "{err}");
    }

    #[test]
    fn encode_query_round_trips_through_decode_form() {
        let params = pairs(&[
            ("Keyword", "select \"a b\" * from t where x~'y' + 1 中文/&="),
            ("Empty", ""),
            ("Tag.1.Value", "a b"),
            ("DBInstanceStatuses", "Running,Creating"),
        ]);
        let query = encode_query(&params);
        assert_eq!(
            &query[..query.find("&Empty").unwrap()],
            "Keyword=select%20%22a%20b%22%20%2A%20from%20t%20where%20x~%27y%27%20%2B%201%20%E4%B8%AD%E6%96%87%2F%26%3D"
        );
        assert!(query.contains("&Empty=&"));
        assert_eq!(decode_form(query.as_bytes()).unwrap(), params);
        assert_eq!(encode_query(&[]), "");
    }
}
