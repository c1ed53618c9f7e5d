//! The request's parameter set: query string ∪ form body, decoded once, with the lookups every
//! action uses (required, optional, enumerated) turning bad input into wire errors.

use crate::error::{ApiError, ErrorCode};
use std::collections::BTreeMap;

/// The longest single parameter value accepted. The documented parameters are short; a bigger
/// value is an error, not something to carry through signing and storage.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// The longest parameter name accepted; the documented names are far shorter.
pub const MAX_NAME_BYTES: usize = 128;

/// At most this many parameters in one request.
pub const MAX_PARAMS: usize = 256;

/// Decoded parameters, each name at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// In wire order, which the v1 signature needs (it re-sorts) and error messages prefer.
    pairs: Vec<(String, String)>,
    index: BTreeMap<String, usize>,
}

impl Params {
    /// Builds the set from decoded pairs, refusing duplicates and oversized input: a duplicated
    /// name is ambiguous (which one was signed?), so it is never silently resolved.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        if pairs.len() > MAX_PARAMS {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "The request has {} parameters; at most {MAX_PARAMS} are accepted.",
                    pairs.len()
                ),
            ));
        }
        let mut index = BTreeMap::new();
        for (i, (name, value)) in pairs.iter().enumerate() {
            if name.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    "The request has a parameter with an empty name.",
                ));
            }
            if name.len() > MAX_NAME_BYTES {
                return Err(ApiError::invalid(
                    &printable(name),
                    format_args!("its name is longer than {MAX_NAME_BYTES} bytes"),
                ));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(ApiError::invalid(
                    name,
                    format_args!("longer than {MAX_VALUE_BYTES} bytes"),
                ));
            }
            // No store can hold U+0000 in text (PostgreSQL refuses it), and no API value
            // needs it.
            if name.contains('\0') || value.contains('\0') {
                return Err(ApiError::invalid(
                    &printable(name),
                    "it contains a NUL character (U+0000)",
                ));
            }
            if index.insert(name.clone(), i).is_some() {
                return Err(ApiError::invalid(name, "given more than once"));
            }
        }
        Ok(Self { pairs, index })
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value, empty values included: `SignatureType=` is present and signed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.pairs[i].1.as_str())
    }

    /// A present, non-empty value or `MissingParameter`.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing(name)),
        }
    }

    /// A non-empty value, if any. Business parameters sent empty count as absent, as the
    /// official SDKs never send empty optional fields.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// An optional value parsed with `FromStr`, with `InvalidParameter` naming the field.
    pub fn parsed<T>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.optional(name)
            .map(|v| v.parse::<T>().map_err(|e| ApiError::invalid(name, e)))
            .transpose()
    }

    /// A positive integer with bounds, e.g. `PageNumber`.
    pub fn positive_int(&self, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::invalid(
                    name,
                    format_args!("expected an integer from 1 to {max}"),
                )),
            },
        }
    }

    /// `PageSize`: one of 30, 50 or 100 (default 30), as documented.
    pub fn page_size(&self) -> Result<u32, ApiError> {
        match self.optional("PageSize") {
            None => Ok(30),
            Some("30") => Ok(30),
            Some("50") => Ok(50),
            Some("100") => Ok(100),
            Some(_) => Err(ApiError::invalid("PageSize", "expected 30, 50 or 100")),
        }
    }

    /// A comma-joined list (the Tea SDK's `simple` style for arrays), blanks dropped.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.optional(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parameter names go into messages; keep them short and printable.
fn printable(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<Params, ApiError> {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err = params(&[("A", "1"), ("A", "2")]).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameter);
        assert!(err.message.contains("\"A\""), "{}", err.message);
    }

    #[test]
    fn nul_characters_are_refused_in_names_and_values() {
        for pairs in [[("Keyword", "a\0b")], [("Key\0word", "ab")]] {
            let err = params(&pairs).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidParameter);
            assert!(err.message.contains("NUL"), "{}", err.message);
            assert!(!err.message.contains('\0'), "{:?}", err.message);
        }
        assert!(params(&[("Keyword", "a\u{1}b")]).is_ok());
    }

    #[test]
    fn empty_values_are_present_but_not_required_values() {
        let p = params(&[("SignatureType", "")]).unwrap();
        assert_eq!(p.get("SignatureType"), Some(""));
        assert_eq!(
            p.required("SignatureType").unwrap_err().code,
            ErrorCode::MissingParameter
        );
        assert_eq!(p.optional("SignatureType"), None);
    }

    #[test]
    fn page_size_takes_only_documented_values() {
        for (v, ok) in [
            ("30", true),
            ("50", true),
            ("100", true),
            ("7", false),
            ("031", false),
            ("-30", false),
        ] {
            assert_eq!(
                params(&[("PageSize", v)]).unwrap().page_size().is_ok(),
                ok,
                "{v}"
            );
        }
        assert_eq!(params(&[]).unwrap().page_size().unwrap(), 30);
    }

    #[test]
    fn oversized_values_and_too_many_params_are_refused() {
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        assert!(params(&[("K", &big)]).is_err());
        let many: Vec<_> = (0..=MAX_PARAMS)
            .map(|i| (format!("P{i}"), String::new()))
            .collect();
        assert!(Params::from_pairs(many).is_err());
    }

    #[test]
    fn lists_split_on_commas() {
        let p = params(&[("S", "Running, Creating,,")]).unwrap();
        assert_eq!(p.list("S"), ["Running", "Creating"]);
        assert!(p.list("T").is_empty());
    }
}
