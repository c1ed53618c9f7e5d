//! Response bodies on the wire: JSON by default, XML when `Format=XML`, for successes and for
//! the error envelope. Pure functions from values to bytes; HTTP lives in the server.

use crate::error::ApiError;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde_json::{Map, Value};

pub const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// Exactly this string: the Tea SDK parses an error body as XML only on an exact match.
pub const XML_CONTENT_TYPE: &str = "text/xml;charset=utf-8";

/// The response format a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Xml,
}

impl Format {
    /// `Format` is case-insensitive: Tea v2 sends `json`, the old core SDK `JSON` or `XML`.
    pub fn parse(value: Option<&str>) -> Option<Format> {
        match value {
            None | Some("") => Some(Format::Json),
            Some(v) if v.eq_ignore_ascii_case("json") => Some(Format::Json),
            Some(v) if v.eq_ignore_ascii_case("xml") => Some(Format::Xml),
            Some(_) => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON_CONTENT_TYPE,
            Format::Xml => XML_CONTENT_TYPE,
        }
    }
}

/// A success body: `RequestId` first, then the action's fields. Never a `Code` key, because
/// pop-core treats any body with a `Code` as an error.
pub fn success(
    format: Format,
    action: &str,
    request_id: &str,
    body: Map<String, Value>,
) -> Vec<u8> {
    debug_assert!(!body.contains_key("Code"));
    let mut top = Map::with_capacity(body.len() + 1);
    top.insert("RequestId".into(), Value::String(request_id.into()));
    top.extend(body);
    match format {
        Format::Json => json_bytes(&top),
        Format::Xml => xml_document(&format!("{action}Response"), &top),
    }
}

/// The error envelope: `RequestId, HostId, Code, Message, Recommend`.
pub fn error(format: Format, request_id: &str, host_id: &str, err: &ApiError) -> Vec<u8> {
    let mut top = Map::with_capacity(5);
    top.insert("RequestId".into(), request_id.into());
    top.insert("HostId".into(), host_id.into());
    top.insert("Code".into(), err.code.as_str().into());
    top.insert("Message".into(), err.message.clone().into());
    top.insert(
        "Recommend".into(),
        format!(
            "https://api.aliyun.com/troubleshoot?q={}&product=gpdb",
            err.code.as_str()
        )
        .into(),
    );
    match format {
        Format::Json => json_bytes(&top),
        Format::Xml => xml_document("Error", &top),
    }
}

fn json_bytes(map: &Map<String, Value>) -> Vec<u8> {
    // Serialising a map of JSON values cannot fail.
    serde_json::to_vec(map).unwrap_or_default()
}

/// Renders `root` with one child per key. An array repeats the element named after its key
/// (`<Records>…</Records><Records>…</Records>`), and `Items.DBInstance[]` therefore becomes
/// `<Items><DBInstance>…</DBInstance>…</Items>`, matching the documented samples.
fn xml_document(root: &str, map: &Map<String, Value>) -> Vec<u8> {
    let mut writer = Writer::new(Vec::with_capacity(256));
    // Writing into a Vec cannot fail, so the results below are ignored deliberately.
    let _ = writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    write_element(&mut writer, root, &Value::Object(map.clone()));
    writer.into_inner()
}

fn write_element(writer: &mut Writer<Vec<u8>>, name: &str, value: &Value) {
    if let Value::Array(items) = value {
        for item in items {
            write_element(writer, name, item);
        }
        return;
    }
    let _ = writer.write_event(Event::Start(BytesStart::new(name)));
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                write_element(writer, key, child);
            }
        }
        Value::String(s) => {
            let _ = writer.write_event(Event::Text(BytesText::new(&xml_safe(s))));
        }
        Value::Number(n) => {
            let _ = writer.write_event(Event::Text(BytesText::new(&n.to_string())));
        }
        Value::Bool(b) => {
            let _ = writer.write_event(Event::Text(BytesText::new(if *b {
                "true"
            } else {
                "false"
            })));
        }
        Value::Null | Value::Array(_) => {}
    }
    let _ = writer.write_event(Event::End(BytesEnd::new(name)));
}

/// XML 1.0 cannot carry most control characters even escaped; they become U+FFFD.
fn xml_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let ok = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    };
    if s.chars().all(ok) {
        s.into()
    } else {
        s.chars()
            .map(|c| if ok(c) { c } else { '\u{FFFD}' })
            .collect::<String>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn format_is_case_insensitive_and_defaults_to_json() {
        assert_eq!(Format::parse(None), Some(Format::Json));
        assert_eq!(Format::parse(Some("json")), Some(Format::Json));
        assert_eq!(Format::parse(Some("Xml")), Some(Format::Xml));
        assert_eq!(Format::parse(Some("yaml")), None);
    }

    #[test]
    fn json_success_puts_request_id_first() {
        let out = success(Format::Json, "X", "R-1", body(json!({"Records": []})));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"RequestId":"R-1","Records":[]}"#
        );
    }

    #[test]
    fn xml_success_repeats_array_elements_and_wraps_items() {
        let out = success(
            Format::Xml,
            "DescribeDBInstances",
            "R-1",
            body(json!({
                "Items": {"DBInstance": [{"DBInstanceId": "a"}, {"DBInstanceId": "b<&>"}]},
                "TotalRecordCount": 2,
                "Truncated": false
            })),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                "<DescribeDBInstancesResponse><RequestId>R-1</RequestId>",
                "<Items><DBInstance><DBInstanceId>a</DBInstanceId></DBInstance>",
                "<DBInstance><DBInstanceId>b&lt;&amp;&gt;</DBInstanceId></DBInstance></Items>",
                "<TotalRecordCount>2</TotalRecordCount><Truncated>false</Truncated>",
                "</DescribeDBInstancesResponse>"
            )
        );
    }

    #[test]
    fn error_envelope_has_the_five_documented_keys_in_order() {
        let err = ApiError::missing("DBInstanceId");
        let out = error(Format::Json, "R-2", "h", &err);
        let v: Map<String, Value> = serde_json::from_slice(&out).unwrap();
        let keys: Vec<_> = v.keys().cloned().collect();
        assert_eq!(
            keys,
            ["RequestId", "HostId", "Code", "Message", "Recommend"]
        );
        assert_eq!(v["Code"], "MissingParameter");
        let xml = String::from_utf8(error(
            Format::Xml,
            "R-2",
            "h",
            &ApiError::code(ErrorCode::Throttling),
        ))
        .unwrap();
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Error><RequestId>R-2</RequestId><HostId>h</HostId><Code>Throttling</Code>"#), "{xml}");
    }

    #[test]
    fn control_characters_never_break_the_xml() {
        let out = success(Format::Xml, "A", "R", body(json!({"S": "a\u{1}b\tc"})));
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("<S>a\u{FFFD}b\tc</S>"), "{s}");
    }
}
