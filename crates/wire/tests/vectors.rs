//! Known-answer tests over every captured official-SDK request in `shared/vectors`.
//!
//! Our client signs with the same code the server verifies with, so round trips
//! alone would pass a shared bug; these vectors were produced by the real SDK.

use std::path::{Path, PathBuf};

use gpdiag_wire::encode::{decode_form, percent_encode};
use gpdiag_wire::sign::{
    acs3_canonical_request, acs3_signature, acs3_string_to_sign, acs3_verify,
    parse_acs3_authorization, sha256_hex, sign_acs3, sign_v1, v1_canonical_query, v1_signature,
    v1_string_to_sign, v1_verify, Credentials, ACS3_REQUIRED_SIGNED_HEADERS,
};
use serde_json::Value;

const VECTOR_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors");

type Params = Vec<(String, String)>;

struct Vector {
    file: String,
    json: Value,
}

impl Vector {
    fn str(&self, pointer: &str) -> &str {
        self.json
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: missing string at {pointer}", self.file))
    }

    fn secret(&self) -> &str {
        self.str("/secret")
    }

    fn method(&self) -> &str {
        self.str("/request/method")
    }

    fn is_acs3(&self) -> bool {
        self.str("/signature/scheme") == "ACS3-HMAC-SHA256"
    }

    /// The `decoded_query` / `decoded_body` objects, in file order (serde_json's
    /// `preserve_order` is on in the workspace), which is wire order.
    fn object_pairs(&self, pointer: &str) -> Params {
        let object = self
            .json
            .pointer(pointer)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{}: missing object at {pointer}", self.file));
        object
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: {pointer}.{k} is not a string", self.file));
                (k.clone(), v.to_owned())
            })
            .collect()
    }

    fn query(&self) -> Params {
        decode_form(self.str("/request/raw_query").as_bytes())
            .unwrap_or_else(|e| panic!("{}: raw_query: {e}", self.file))
    }

    fn body(&self) -> Params {
        decode_form(self.str("/request/raw_body").as_bytes())
            .unwrap_or_else(|e| panic!("{}: raw_body: {e}", self.file))
    }

    /// Headers as received, names lower-cased (HTTP libraries hand them over that way).
    fn headers(&self) -> Params {
        self.json
            .pointer("/request/headers")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{}: missing request.headers", self.file))
            .iter()
            .map(|pair| {
                let name = pair[0].as_str().expect("header name");
                let value = pair[1].as_str().expect("header value");
                (name.to_ascii_lowercase(), value.to_owned())
            })
            .collect()
    }

    fn header(&self, name: &str) -> String {
        let found: Vec<String> = self
            .headers()
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found.len(), 1, "{}: header {name} once", self.file);
        found.into_iter().next().unwrap()
    }

    /// v1 signs query ∪ form body.
    fn v1_params(&self) -> Params {
        let mut params = self.query();
        params.extend(self.body());
        params
    }
}

fn load_vectors() -> Vec<Vector> {
    let dir = Path::new(VECTOR_DIR);
    assert!(
        dir.is_dir(),
        "vector directory {} is missing: clone the repository with shared/ beside it",
        dir.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".vector.json"))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 14,
        "expected at least 14 vectors in {}, found {}",
        dir.display(),
        files.len()
    );
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
            Vector {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            }
        })
        .collect()
}

fn with_value(params: &Params, i: usize, value: String) -> Params {
    let mut p = params.clone();
    p[i].1 = value;
    p
}

fn with_name(params: &Params, i: usize, name: String) -> Params {
    let mut p = params.clone();
    p[i].0 = name;
    p
}

/// Flips one character of a signature so it stays well-formed but is wrong.
fn flip_first_char(signature: &str) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    chars[0] = if chars[0] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

#[test]
fn vector_directory_holds_both_schemes() {
    let vectors = load_vectors();
    let acs3 = vectors.iter().filter(|v| v.is_acs3()).count();
    assert!(acs3 >= 1, "no ACS3 vectors");
    assert!(vectors.len() - acs3 >= 1, "no v1 vectors");
    for v in &vectors {
        if !v.is_acs3() {
            assert!(
                v.str("/signature/scheme").starts_with("v1 HMAC-SHA1"),
                "{}: unknown scheme",
                v.file
            );
        }
    }
}

#[test]
fn decode_form_matches_decoded_query_and_body() {
    for v in load_vectors() {
        assert_eq!(v.query(), v.object_pairs("/decoded_query"), "{}", v.file);
        assert_eq!(v.body(), v.object_pairs("/decoded_body"), "{}", v.file);
    }
}

#[test]
fn v1_vectors_recompute_and_verify() {
    for v in load_vectors().iter().filter(|v| !v.is_acs3()) {
        let params = v.v1_params();
        let on_wire = v.str("/signature/signature_on_wire");
        let received: Vec<&str> = params
            .iter()
            .filter(|(n, _)| n == "Signature")
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(received, [on_wire], "{}", v.file);
        assert_eq!(
            v.str("/signature/signing_key"),
            format!("{}&", v.secret()),
            "{}",
            v.file
        );
        assert_eq!(
            v1_canonical_query(&params),
            v.str("/signature/canonicalized_query"),
            "{}",
            v.file
        );
        let sts = v1_string_to_sign(v.method(), &params);
        assert_eq!(sts, v.str("/signature/string_to_sign"), "{}", v.file);
        let signature = v1_signature(v.secret(), &sts);
        assert_eq!(
            signature,
            v.str("/signature/expected_signature"),
            "{}",
            v.file
        );
        assert_eq!(signature, on_wire, "{}", v.file);
        assert!(v1_verify(v.secret(), &sts, on_wire), "{}", v.file);
    }
}

#[test]
fn v1_vectors_reject_every_tampering() {
    for v in load_vectors().iter().filter(|v| !v.is_acs3()) {
        let params = v.v1_params();
        let secret = v.secret();
        let method = v.method();
        let on_wire = v.str("/signature/signature_on_wire");
        let rejects = |what: &str, method: &str, params: &Params, secret: &str| {
            assert!(
                !v1_verify(secret, &v1_string_to_sign(method, params), on_wire),
                "{}: tampering with {what} still verifies",
                v.file
            );
        };

        let mut tampered = 0;
        for (i, (name, value)) in params.iter().enumerate() {
            if name == "Signature" {
                continue;
            }
            rejects(
                &format!("the value of {name}"),
                method,
                &with_value(&params, i, format!("{value}x")),
                secret,
            );
            rejects(
                &format!("the name {name}"),
                method,
                &with_name(&params, i, format!("{name}x")),
                secret,
            );
            let mut removed = params.clone();
            removed.remove(i);
            rejects(&format!("removing {name}"), method, &removed, secret);
            tampered += 1;
        }
        assert!(tampered >= 9, "{}: too few signed parameters", v.file);

        let other_method = if method == "POST" { "GET" } else { "POST" };
        rejects("the method", other_method, &params, secret);
        rejects(
            "the method's case",
            &method.to_ascii_lowercase(),
            &params,
            secret,
        );

        // Body parameters are signed in v1: one smuggled into the form body breaks it.
        let mut with_body = params.clone();
        with_body.extend(decode_form(b"Extra=1").unwrap());
        rejects("the body", method, &with_body, secret);

        rejects("the secret", method, &params, &format!("{secret}x"));
        rejects("the secret", method, &params, "");

        let sts = v1_string_to_sign(method, &params);
        assert!(
            !v1_verify(secret, &sts, &flip_first_char(on_wire)),
            "{}: a changed signature still verifies",
            v.file
        );
        assert!(!v1_verify(secret, &sts, ""), "{}", v.file);

        // Only Signature is excluded: changing its value does not change what is signed.
        let sig_index = params.iter().position(|(n, _)| n == "Signature").unwrap();
        let other_sig = with_value(&params, sig_index, "whatever".to_owned());
        assert_eq!(v1_string_to_sign(method, &other_sig), sts, "{}", v.file);
    }
}

#[test]
fn acs3_vectors_recompute_and_verify() {
    for v in load_vectors().iter().filter(|v| v.is_acs3()) {
        let auth = parse_acs3_authorization(&v.header("authorization"))
            .unwrap_or_else(|e| panic!("{}: {e}", v.file));
        assert_eq!(
            auth.access_key_id,
            v.str("/signature/access_key_id"),
            "{}",
            v.file
        );
        let expected_signed: Vec<String> = v.json["signature"]["signed_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(auth.signed_headers, expected_signed, "{}", v.file);
        for required in ACS3_REQUIRED_SIGNED_HEADERS {
            assert!(
                auth.signed_headers.iter().any(|h| h == required),
                "{}: {required} not signed",
                v.file
            );
        }
        assert_eq!(
            auth.signature,
            v.str("/signature/signature_on_wire"),
            "{}",
            v.file
        );

        let hashed = sha256_hex(v.str("/request/raw_body").as_bytes());
        assert_eq!(hashed, v.str("/signature/hashed_payload"), "{}", v.file);
        assert_eq!(hashed, v.header("x-acs-content-sha256"), "{}", v.file);

        let canonical = acs3_canonical_request(
            v.method(),
            v.str("/request/path"),
            &v.query(),
            &v.headers(),
            &auth.signed_headers,
            &hashed,
        );
        assert_eq!(
            canonical,
            v.str("/signature/canonical_request"),
            "{}",
            v.file
        );
        let sts = acs3_string_to_sign(&canonical);
        assert_eq!(sts, v.str("/signature/string_to_sign"), "{}", v.file);
        let signature = acs3_signature(v.secret(), &sts);
        assert_eq!(
            signature,
            v.str("/signature/expected_signature"),
            "{}",
            v.file
        );
        assert!(
            acs3_verify(v.secret(), &sts, v.str("/signature/signature_on_wire")),
            "{}",
            v.file
        );
    }
}

#[test]
fn acs3_vectors_reject_every_tampering() {
    for v in load_vectors().iter().filter(|v| v.is_acs3()) {
        let auth = parse_acs3_authorization(&v.header("authorization")).unwrap();
        let secret = v.secret();
        let method = v.method();
        let path = v.str("/request/path");
        let query = v.query();
        let headers = v.headers();
        let hashed = sha256_hex(v.str("/request/raw_body").as_bytes());
        let on_wire = v.str("/signature/signature_on_wire");

        struct Request<'a> {
            method: &'a str,
            path: &'a str,
            query: Params,
            headers: Params,
            signed: Vec<String>,
            hashed: String,
            secret: &'a str,
        }
        let original = || Request {
            method,
            path,
            query: query.clone(),
            headers: headers.clone(),
            signed: auth.signed_headers.clone(),
            hashed: hashed.clone(),
            secret,
        };
        let verifies = |r: &Request| {
            let canonical = acs3_canonical_request(
                r.method, r.path, &r.query, &r.headers, &r.signed, &r.hashed,
            );
            acs3_verify(r.secret, &acs3_string_to_sign(&canonical), on_wire)
        };
        assert!(verifies(&original()), "{}", v.file);
        let rejects = |what: &str, r: Request| {
            assert!(
                !verifies(&r),
                "{}: tampering with {what} still verifies",
                v.file
            );
        };

        for (i, (name, value)) in query.iter().enumerate() {
            rejects(
                &format!("the value of {name}"),
                Request {
                    query: with_value(&query, i, format!("{value}x")),
                    ..original()
                },
            );
            rejects(
                &format!("the name {name}"),
                Request {
                    query: with_name(&query, i, format!("{name}x")),
                    ..original()
                },
            );
            let mut removed = query.clone();
            removed.remove(i);
            rejects(
                &format!("removing {name}"),
                Request {
                    query: removed,
                    ..original()
                },
            );
        }
        let mut added = query.clone();
        added.push(("Extra".to_owned(), "1".to_owned()));
        rejects(
            "an added query parameter",
            Request {
                query: added,
                ..original()
            },
        );

        let mut signed_seen = 0;
        for (i, (name, value)) in headers.iter().enumerate() {
            let changed = Request {
                headers: with_value(&headers, i, format!("{value}x")),
                ..original()
            };
            if auth.signed_headers.contains(name) {
                signed_seen += 1;
                rejects(&format!("signed header {name}"), changed);
                let mut removed = headers.clone();
                removed.remove(i);
                rejects(
                    &format!("removing signed header {name}"),
                    Request {
                        headers: removed,
                        ..original()
                    },
                );
                let mut repeated = headers.clone();
                repeated.push((name.clone(), value.clone()));
                rejects(
                    &format!("repeating signed header {name}"),
                    Request {
                        headers: repeated,
                        ..original()
                    },
                );
            } else {
                // Content-Length, Accept-Encoding, Authorization are added after signing.
                assert!(
                    verifies(&changed),
                    "{}: unsigned header {name} should not matter",
                    v.file
                );
            }
        }
        assert_eq!(signed_seen, auth.signed_headers.len(), "{}", v.file);

        // Whitespace around a signed value is trimmed, as the signer does.
        let host_index = headers.iter().position(|(n, _)| n == "host").unwrap();
        assert!(
            verifies(&Request {
                headers: with_value(&headers, host_index, format!(" {} ", headers[host_index].1)),
                ..original()
            }),
            "{}",
            v.file
        );

        let mut fewer = auth.signed_headers.clone();
        fewer.retain(|h| h != "user-agent");
        rejects(
            "the SignedHeaders list",
            Request {
                signed: fewer,
                ..original()
            },
        );
        let mut reordered = auth.signed_headers.clone();
        reordered.reverse();
        rejects(
            "the SignedHeaders order",
            Request {
                signed: reordered,
                ..original()
            },
        );

        rejects(
            "the method",
            Request {
                method: if method == "POST" { "GET" } else { "POST" },
                ..original()
            },
        );
        rejects(
            "the path",
            Request {
                path: "/x",
                ..original()
            },
        );
        rejects(
            "the body",
            Request {
                hashed: sha256_hex(b"DBInstanceId=gp-other"),
                ..original()
            },
        );
        let secret_plus = format!("{secret}x");
        rejects(
            "the secret",
            Request {
                secret: &secret_plus,
                ..original()
            },
        );
        // The v1 key shape (secret + "&") must not be used for ACS3.
        let v1_key = format!("{secret}&");
        rejects(
            "the key shape",
            Request {
                secret: &v1_key,
                ..original()
            },
        );

        let canonical = acs3_canonical_request(
            method,
            path,
            &query,
            &headers,
            &auth.signed_headers,
            &hashed,
        );
        let sts = acs3_string_to_sign(&canonical);
        assert!(
            !acs3_verify(secret, &sts, &flip_first_char(on_wire)),
            "{}: a changed signature still verifies",
            v.file
        );
        assert!(!acs3_verify(secret, &sts, ""), "{}", v.file);
    }
}

/// The common parameters `sign_v1` adds itself.
const V1_COMMON: [&str; 9] = [
    "Action",
    "Format",
    "Version",
    "Timestamp",
    "SignatureNonce",
    "SignatureMethod",
    "SignatureVersion",
    "AccessKeyId",
    "Signature",
];

fn creds(v: &Vector) -> Credentials {
    Credentials {
        access_key_id: v.str("/signature/access_key_id").to_owned(),
        access_key_secret: v.secret().to_owned(),
    }
}

#[test]
fn sign_v1_reproduces_the_tea_v2_requests() {
    for v in load_vectors().iter().filter(|v| !v.is_acs3()) {
        let decoded = v.object_pairs("/decoded_query");
        let get = |name: &str| {
            decoded
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, val)| val.as_str())
                .unwrap_or_else(|| panic!("{}: no {name}", v.file))
        };
        let business: Params = decoded
            .iter()
            .filter(|(n, _)| !V1_COMMON.contains(&n.as_str()))
            .cloned()
            .collect();
        let req = sign_v1(
            &creds(v),
            v.method(),
            get("Action"),
            &business,
            get("Timestamp"),
            get("SignatureNonce"),
        );
        assert_eq!(req.method, v.method());
        assert!(req.body.is_empty());
        let ours = decode_form(req.query.as_bytes()).unwrap();
        let signature = &ours.iter().find(|(n, _)| n == "Signature").unwrap().1;
        assert_eq!(signature, get("Signature"), "{}", v.file);
        // Same parameters, in the Tea SDK's own order.
        assert_eq!(ours, decoded, "{}", v.file);
        assert!(v1_verify(
            v.secret(),
            &v1_string_to_sign(&req.method, &ours),
            signature
        ));
    }
}

#[test]
fn sign_acs3_agrees_with_the_server_side_on_vector_inputs() {
    for v in load_vectors().iter().filter(|v| v.is_acs3()) {
        let query = v.query();
        let req = sign_acs3(
            &creds(v),
            v.method(),
            &v.header("x-acs-action"),
            &query,
            &v.header("host"),
            &v.header("x-acs-date"),
            &v.header("x-acs-signature-nonce"),
            v.str("/request/raw_body").as_bytes(),
        );
        // Every header we send has the value the SDK sent.
        for (name, value) in &req.headers {
            if name != "Authorization" {
                assert_eq!(value, &v.header(name), "{}: {name}", v.file);
            }
        }
        assert_eq!(
            decode_form(req.query.as_bytes()).unwrap().len(),
            query.len()
        );

        // Verify our request the way the server will.
        let auth_value = &req
            .headers
            .iter()
            .find(|(n, _)| n == "Authorization")
            .unwrap()
            .1;
        let auth = parse_acs3_authorization(auth_value).unwrap();
        let lower: Params = req
            .headers
            .iter()
            .map(|(n, val)| (n.to_ascii_lowercase(), val.clone()))
            .collect();
        let canonical = acs3_canonical_request(
            &req.method,
            "/",
            &decode_form(req.query.as_bytes()).unwrap(),
            &lower,
            &auth.signed_headers,
            &sha256_hex(&req.body),
        );
        assert!(
            acs3_verify(
                v.secret(),
                &acs3_string_to_sign(&canonical),
                &auth.signature
            ),
            "{}",
            v.file
        );

        // Signing the SDK's own headers with our smaller SignedHeaders list gives the same answer.
        let subset: Vec<String> = ACS3_REQUIRED_SIGNED_HEADERS
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        let canonical = acs3_canonical_request(
            v.method(),
            "/",
            &query,
            &v.headers(),
            &subset,
            v.str("/signature/hashed_payload"),
        );
        assert_eq!(
            acs3_signature(v.secret(), &acs3_string_to_sign(&canonical)),
            auth.signature,
            "{}",
            v.file
        );
    }
}

#[test]
fn golden_percent_encoding_of_the_spec_keyword() {
    let keyword = "select \"a b\" * from t where x~'y' + 1 中文/&=";
    let expected = "select%20%22a%20b%22%20%2A%20from%20t%20where%20x~%27y%27%20%2B%201%20%E4%B8%AD%E6%96%87%2F%26%3D";
    assert_eq!(percent_encode(keyword), expected);

    // The Tea wire form in the vectors decodes to the same keyword, and its
    // canonical form is exactly the old core / pop-core wire form.
    let mut found = 0;
    for v in load_vectors() {
        if let Some((_, value)) = v.query().into_iter().find(|(n, _)| n == "Keyword") {
            assert_eq!(value, keyword, "{}", v.file);
            assert!(
                v.str("/request/raw_query")
                    .contains("Keyword=select+%22a+b%22+%2A+from+t+where+x~%27y%27+%2B+1+%E4%B8%AD%E6%96%87%2F%26%3D"),
                "{}",
                v.file
            );
            found += 1;
        }
    }
    assert!(found >= 2, "the Keyword vectors are gone");
}
