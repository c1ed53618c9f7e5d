//! Where the client's key comes from: `--profile NAME` in the credentials file, else the
//! `ALIBABA_CLOUD_ACCESS_KEY_ID` / `ALIBABA_CLOUD_ACCESS_KEY_SECRET` variables the Alibaba Cloud
//! tools read, else the file's `default` profile.
//!
//! The file is TOML, one table per profile:
//!
//! ```toml
//! [default]
//! access_key_id = "LTAI…"
//! access_key_secret = "…"            # or "env:VAR" to read it from a variable
//! endpoint = "http://127.0.0.1:8080"  # optional
//! region = "cn-hangzhou"              # optional
//! ```
//!
//! No message here ever quotes a value from the file or the secret variable: parse errors give
//! the line and what was wrong, never the text.

use super::progress::Ui;
use super::{Exit, Failure, Outcome};
use gpdiag_wire::sign::Credentials;
use std::path::{Path, PathBuf};

pub const ID_VAR: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const SECRET_VAR: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Overrides the credentials file's location.
pub const FILE_VAR: &str = "GPDIAG_CREDENTIALS_FILE";
/// The profile used when neither `--profile` nor the key variables are given.
pub const DEFAULT_PROFILE: &str = "default";

/// A key and where to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub credentials: Credentials,
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// One profile of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

fn no_credentials(message: String) -> Failure {
    Failure::new(Exit::Credentials, message)
}

/// `$GPDIAG_CREDENTIALS_FILE`, else `$XDG_CONFIG_HOME/gpdiag/credentials`, else
/// `~/.config/gpdiag/credentials`.
pub fn file_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(path) = set(FILE_VAR) {
        return Some(PathBuf::from(path));
    }
    if let Some(dir) = set("XDG_CONFIG_HOME") {
        return Some(Path::new(&dir).join("gpdiag").join("credentials"));
    }
    set("HOME").map(|home| Path::new(&home).join(".config/gpdiag/credentials"))
}

pub fn resolve(
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    ui: &Ui,
) -> Outcome<Resolved> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let path = file_path(env);
    let where_ = || {
        path.as_ref().map_or_else(
            || format!("the credentials file (set {FILE_VAR})"),
            |p| p.display().to_string(),
        )
    };
    if let Some(name) = profile {
        let path = path.as_ref().ok_or_else(|| {
            no_credentials(format!(
                "--profile {name}: no credentials file (set {FILE_VAR} or HOME)"
            ))
        })?;
        let text = read(path, ui)?.ok_or_else(|| {
            no_credentials(format!(
                "--profile {name}: {} does not exist (see docs/cli.md for its format)",
                path.display()
            ))
        })?;
        let profile = find_profile(&text, path, name, env)?.ok_or_else(|| {
            no_credentials(format!(
                "--profile {name}: {} has no profile [{name}]",
                path.display()
            ))
        })?;
        return Ok(profile.into_resolved());
    }
    match (set(ID_VAR), set(SECRET_VAR)) {
        (Some(id), Some(secret)) => {
            return Ok(Resolved {
                credentials: Credentials {
                    access_key_id: id,
                    access_key_secret: secret,
                },
                endpoint: None,
                region: None,
            })
        }
        (Some(_), None) => {
            return Err(no_credentials(format!(
                "{ID_VAR} is set but {SECRET_VAR} is not"
            )))
        }
        (None, Some(_)) => {
            return Err(no_credentials(format!(
                "{SECRET_VAR} is set but {ID_VAR} is not"
            )))
        }
        (None, None) => {}
    }
    if let Some(path) = &path {
        if let Some(text) = read(path, ui)? {
            if let Some(profile) = find_profile(&text, path, DEFAULT_PROFILE, env)? {
                return Ok(profile.into_resolved());
            }
        }
    }
    Err(no_credentials(format!(
        "no credentials: set {ID_VAR} and {SECRET_VAR}, or add a [{DEFAULT_PROFILE}] profile (or another, with --profile NAME) to {}",
        where_()
    )))
}

impl Profile {
    fn into_resolved(self) -> Resolved {
        Resolved {
            credentials: Credentials {
                access_key_id: self.access_key_id,
                access_key_secret: self.access_key_secret,
            },
            endpoint: self.endpoint,
            region: self.region,
        }
    }
}

/// The file's text, or None if it does not exist. Warns when others may read it.
fn read(path: &Path, ui: &Ui) -> Outcome<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(path) {
                    if meta.permissions().mode() & 0o077 != 0 {
                        ui.note(&format!(
                            "warning: {} can be read by other users; chmod 600 it",
                            path.display()
                        ));
                    }
                }
            }
            #[cfg(not(unix))]
            let _ = ui;
            Ok(Some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(no_credentials(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Profile `name` of the file's `text`, with `env:VAR` secrets read from the environment.
pub fn find_profile(
    text: &str,
    path: &Path,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Outcome<Option<Profile>> {
    let bad = |why: String| no_credentials(format!("{}: {why}", path.display()));
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // The message names what is wrong; the span gives the line. Neither quotes the text.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        bad(match line {
            Some(line) => format!("line {line}: {}", e.message().trim()),
            None => e.message().trim().to_owned(),
        })
    })?;
    for (key, value) in &table {
        if !value.is_table() {
            return Err(bad(format!(
                "`{key}` is not a profile: write profiles as [NAME] tables"
            )));
        }
    }
    let Some(fields) = table.get(name).and_then(|v| v.as_table()) else {
        return Ok(None);
    };
    for key in fields.keys() {
        if !["access_key_id", "access_key_secret", "endpoint", "region"].contains(&key.as_str()) {
            return Err(bad(format!(
                "[{name}] has an unknown key `{key}` (expected access_key_id, access_key_secret, endpoint, region)"
            )));
        }
    }
    let text_field = |key: &str| -> Outcome<Option<String>> {
        match fields.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if s.is_empty() => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("[{name}] {key} must be a string"))),
        }
    };
    let required = |key: &str| -> Outcome<String> {
        text_field(key)?.ok_or_else(|| bad(format!("[{name}] has no {key}")))
    };
    let access_key_id = required("access_key_id")?;
    let mut access_key_secret = required("access_key_secret")?;
    if let Some(var) = access_key_secret.strip_prefix("env:") {
        let var = var.to_owned();
        access_key_secret = env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
            bad(format!(
                "[{name}] access_key_secret names the variable {var}, which is not set"
            ))
        })?;
    }
    Ok(Some(Profile {
        access_key_id,
        access_key_secret,
        endpoint: text_field("endpoint")?,
        region: text_field("region")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn quiet() -> Ui {
        Ui::new(true)
    }

    const FILE: &str = r#"
[default]
access_key_id = "LTAIdefault"
access_key_secret = "default-secret"

[prod]
access_key_id = "LTAIprod"
access_key_secret = "env:PROD_SECRET"
endpoint = "https://gpdiag.example.com"
region = "cn-shanghai"
"#;

    fn with_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, text).unwrap();
        let path = path.to_string_lossy().into_owned();
        (dir, path)
    }

    #[test]
    fn the_file_location_follows_the_override_then_xdg_then_home() {
        let p = |pairs: &[(&str, &str)]| file_path(&env_of(pairs));
        assert_eq!(
            p(&[(FILE_VAR, "/x/c"), ("HOME", "/h")]),
            Some(PathBuf::from("/x/c"))
        );
        assert_eq!(
            p(&[("XDG_CONFIG_HOME", "/cfg"), ("HOME", "/h")]),
            Some(PathBuf::from("/cfg/gpdiag/credentials"))
        );
        assert_eq!(
            p(&[("HOME", "/h")]),
            Some(PathBuf::from("/h/.config/gpdiag/credentials"))
        );
        assert_eq!(p(&[]), None);
    }

    #[test]
    fn a_named_profile_wins_over_the_variables_and_reads_env_secrets() {
        let (_dir, path) = with_file(FILE);
        let env = env_of(&[
            (FILE_VAR, &path),
            (ID_VAR, "LTAIenv"),
            (SECRET_VAR, "env-secret"),
            ("PROD_SECRET", "prod-secret"),
        ]);
        let r = resolve(Some("prod"), &env, &quiet()).unwrap();
        assert_eq!(r.credentials.access_key_id, "LTAIprod");
        assert_eq!(r.credentials.access_key_secret, "prod-secret");
        assert_eq!(r.endpoint.as_deref(), Some("https://gpdiag.example.com"));
        assert_eq!(r.region.as_deref(), Some("cn-shanghai"));
        // Without --profile the variables win over the file's default profile...
        let r = resolve(None, &env, &quiet()).unwrap();
        assert_eq!(r.credentials.access_key_id, "LTAIenv");
        // ...and without them the default profile is used.
        let env = env_of(&[(FILE_VAR, &path)]);
        let r = resolve(None, &env, &quiet()).unwrap();
        assert_eq!(r.credentials.access_key_secret, "default-secret");
    }

    #[test]
    fn missing_or_broken_credentials_exit_3_without_quoting_secrets() {
        let (_dir, path) = with_file(FILE);
        // (profile, environment, what the message must say)
        type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (None, vec![], "no credentials"),
            (
                None,
                vec![(ID_VAR, "LTAIx")],
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET is not",
            ),
            (
                Some("nope"),
                vec![(FILE_VAR, &path)],
                "has no profile [nope]",
            ),
            (
                Some("prod"),
                vec![(FILE_VAR, &path)],
                "names the variable PROD_SECRET",
            ),
            (
                Some("x"),
                vec![(FILE_VAR, "/nonexistent/gpdiag-credentials")],
                "does not exist",
            ),
        ];
        for (profile, env, expected) in cases {
            let e = resolve(profile, &env_of(&env), &quiet()).unwrap_err();
            assert_eq!(e.exit, Exit::Credentials);
            assert!(e.message.contains(expected), "{}", e.message);
        }
        for (text, expected) in [
            (
                "[default]\naccess_key_id = \"LTAI\"\naccess_key_secret = \"s3cr3t-value\n",
                "line 3",
            ),
            (
                "[default]\naccess_key_id = \"LTAI\"\naccess_key_secret = 12345\n",
                "must be a string",
            ),
            (
                "[default]\naccess_key_id = \"LTAI\"\naccess_key_secret = \"s3cr3t-value\"\nsecret = \"s3cr3t-value\"\n",
                "unknown key `secret`",
            ),
            ("access_key_secret = \"s3cr3t-value\"\n", "not a profile"),
            ("[default]\naccess_key_id = \"LTAI\"\n", "has no access_key_secret"),
        ] {
            let (_dir, path) = with_file(text);
            let e = resolve(None, &env_of(&[(FILE_VAR, &path)]), &quiet()).unwrap_err();
            assert_eq!(e.exit, Exit::Credentials);
            assert!(e.message.contains(expected), "{text:?}: {}", e.message);
            assert!(!e.message.contains("s3cr3t"), "{}", e.message);
            assert!(!e.message.contains("12345"), "{}", e.message);
        }
    }
}
