//! Rotation playbooks: what a new credential looks like and how it is installed and tested,
//! and the executor that rotates a secret step by step under a journal ([`machine`]).
//!
//! A playbook is a TOML file in `playbooks/` that declares its `kind`:
//! - `random`: a random value (length, alphabet; the OS RNG or KMS GenerateRandom), the
//!   whole secret or one field of a JSON secret;
//! - `command`: the same value, handed to a script on stdin that installs it where it is
//!   used (and optionally to a second script that tests it);
//! - `iam-access-key`: an IAM user's access key pair held as a JSON secret: a second key is
//!   created, tested, promoted; the old one is deactivated after the grace period (when IAM
//!   shows it unused since), and deleted later.
//!
//! Secret values only ever exist as [`SecretValue`], which redacts itself in `Debug` and
//! `Display`, so a value cannot reach a log line or an error message by formatting.

pub mod machine;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A secret value. Formatting it prints `[redacted]`; [`SecretValue::expose`] is the one way
/// to the text, used where the value is sent to AWS or to an install script.
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    pub fn new(value: String) -> SecretValue {
        SecretValue(SecretString::from(value))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &SecretValue) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the random bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RandomSource {
    /// The operating system's RNG (`getrandom`).
    Os,
    /// KMS GenerateRandom in the secret's account (an HSM-backed source, for auditors who
    /// ask for one).
    Kms,
}

/// How a new value is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub length: usize,
    pub alphabet: Vec<char>,
    /// Replace only this field of a JSON object secret, keeping the others.
    pub json_field: Option<String>,
    pub source: RandomSource,
}

/// A rotation playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playbook {
    Random(Generate),
    Command {
        generate: Generate,
        /// Receives the pending value on stdin and installs it; exit 0 = installed.
        install: Vec<String>,
        /// Receives the pending value on stdin and checks it works; exit 0 = works.
        test: Option<Vec<String>>,
        timeout: Duration,
    },
    IamAccessKey(AccessKeyPlaybook),
    Http(Box<HttpPlaybook>),
    /// Secrets Manager's own rotation: RotateSecret runs the secret's rotation Lambda, and
    /// whittle follows it until AWSCURRENT moves (or the timeout passes).
    Native {
        timeout: Duration,
        poll: Duration,
    },
}

/// The `http` playbook: a third-party API key rotated through the provider's HTTPS API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPlaybook {
    /// Creates a new key; may use `{{current}}` and `{{current_id}}`.
    pub create: HttpRequest,
    /// Checks the new key; may use `{{pending}}` and `{{pending_id}}`.
    pub test: Option<HttpRequest>,
    /// Revokes the old key after the grace period; may use `{{old_id}}`, `{{pending}}` and
    /// `{{pending_id}}` (the old key itself is never kept, so it cannot be templated).
    pub revoke: Option<HttpRequest>,
    /// JSON pointers into the create response: the new key, and its id.
    pub key_pointer: String,
    pub id_pointer: Option<String>,
    /// For a JSON object secret: the fields holding the key and its id.
    pub json_field: Option<String>,
    pub id_field: Option<String>,
    /// Extra trusted CA certificates (PEM), besides the system's; TLS is always verified.
    pub ca_file: Option<std::path::PathBuf>,
    pub timeout: Duration,
}

/// One templated HTTPS request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Statuses that mean success; default any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

impl HttpRequest {
    pub fn accepts(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect_status.contains(&status)
        }
    }
}

fn default_method() -> String {
    "POST".to_owned()
}

/// Replaces `{{name}}` placeholders; an unknown placeholder is an error naming it, so a typo
/// never sends a literal `{{pendng}}` to a provider.
pub fn render(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "an unclosed `{{` in a template".to_owned())?;
        let name = after[..end].trim();
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                format!(
                    "`{{{{{name}}}}}` is not available here (use {})",
                    values
                        .iter()
                        .map(|(n, _)| format!("{{{{{n}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}
/// The `iam-access-key` playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyPlaybook {
    /// The IAM user whose key pair the secret holds.
    pub user: String,
    /// The JSON fields of the secret that hold the key id and the secret key.
    pub id_field: String,
    pub secret_field: String,
    /// How long to keep testing a new key while IAM propagates it.
    pub propagation_timeout: Duration,
    /// How long after deactivation the old key is deleted.
    pub delete_after: Duration,
}

impl Playbook {
    pub fn kind(&self) -> &'static str {
        match self {
            Playbook::Random(_) => "random",
            Playbook::Command { .. } => "command",
            Playbook::IamAccessKey(_) => "iam-access-key",
            Playbook::Http(_) => "http",
            Playbook::Native { .. } => "native",
        }
    }

    /// How new values are made, for the kinds that make them.
    pub fn generate(&self) -> Option<&Generate> {
        match self {
            Playbook::Random(g) | Playbook::Command { generate: g, .. } => Some(g),
            Playbook::IamAccessKey(_) | Playbook::Http(_) | Playbook::Native { .. } => None,
        }
    }

    /// Whether the old credential must be revoked after promotion (after the grace period).
    pub fn revokes(&self) -> bool {
        matches!(self, Playbook::IamAccessKey(_))
            || matches!(self, Playbook::Http(h) if h.revoke.is_some())
    }
}

/// The alphabets a playbook can name.
const ALPHABETS: &[(&str, &str)] = &[
    (
        "alphanumeric",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    ),
    ("hex", "0123456789abcdef"),
    (
        "base64url",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    ),
    (
        "printable",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-.:;<=>?@[]^_{|}~",
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RandomFile {
    #[allow(dead_code)]
    kind: String,
    #[serde(default = "default_length")]
    length: usize,
    #[serde(default = "default_alphabet")]
    alphabet: String,
    #[serde(default)]
    characters: Option<String>,
    #[serde(default)]
    json_field: Option<String>,
    #[serde(default = "default_source")]
    source: RandomSource,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandFile {
    #[allow(dead_code)]
    kind: String,
    #[serde(default = "default_length")]
    length: usize,
    #[serde(default = "default_alphabet")]
    alphabet: String,
    #[serde(default)]
    characters: Option<String>,
    #[serde(default)]
    json_field: Option<String>,
    #[serde(default = "default_source")]
    source: RandomSource,
    install: Vec<String>,
    #[serde(default)]
    test: Option<Vec<String>>,
    #[serde(default = "default_timeout")]
    timeout: String,
}

fn default_length() -> usize {
    32
}
fn default_alphabet() -> String {
    "alphanumeric".to_owned()
}
fn default_source() -> RandomSource {
    RandomSource::Os
}
fn default_timeout() -> String {
    "60s".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessKeyFile {
    #[allow(dead_code)]
    kind: String,
    user: String,
    #[serde(default = "default_id_field")]
    id_field: String,
    #[serde(default = "default_secret_field")]
    secret_field: String,
    #[serde(default = "default_propagation")]
    propagation_timeout: String,
    #[serde(default = "default_delete_after")]
    delete_after: String,
}

fn default_id_field() -> String {
    "AccessKeyId".to_owned()
}
fn default_secret_field() -> String {
    "SecretAccessKey".to_owned()
}
fn default_propagation() -> String {
    "2m".to_owned()
}
fn default_delete_after() -> String {
    "7days".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[allow(dead_code)]
    kind: String,
    create: HttpRequest,
    #[serde(default)]
    test: Option<HttpRequest>,
    #[serde(default)]
    revoke: Option<HttpRequest>,
    key_pointer: String,
    #[serde(default)]
    id_pointer: Option<String>,
    #[serde(default)]
    json_field: Option<String>,
    #[serde(default)]
    id_field: Option<String>,
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
    #[serde(default = "default_timeout")]
    timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeFile {
    #[allow(dead_code)]
    kind: String,
    #[serde(default = "default_native_timeout")]
    timeout: String,
    #[serde(default = "default_poll")]
    poll: String,
}

fn default_native_timeout() -> String {
    "10m".to_owned()
}
fn default_poll() -> String {
    "5s".to_owned()
}

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
}

/// Why a playbook file is not usable; `Display` names the file and, for TOML errors, the line.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

pub(crate) fn located_error(path: &str, text: &str, error: &toml::de::Error) -> PlaybookError {
    let (line, column) = error.span().map_or((1, 1), |span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    });
    PlaybookError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message: error.message().to_owned(),
    }
}

pub(crate) fn invalid(path: &str, message: String) -> PlaybookError {
    PlaybookError::Invalid {
        path: path.to_owned(),
        line: 1,
        column: 1,
        message,
    }
}

/// Reads and checks a playbook file.
pub fn load(path: &Path) -> Result<Playbook, PlaybookError> {
    let (shown, text) = read(path)?;
    parse(&shown, &text)
}

/// A playbook file's text, with its path as messages show it.
pub(crate) fn read(path: &Path) -> Result<(String, String), PlaybookError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PlaybookError::Read {
        path: shown.clone(),
        source,
    })?;
    Ok((shown, text))
}

/// Parses playbook text; `path` is only for messages.
pub fn parse(path: &str, text: &str) -> Result<Playbook, PlaybookError> {
    let kind: KindOnly = toml::from_str(text).map_err(|e| located_error(path, text, &e))?;
    let generate = |length: usize,
                    alphabet: &str,
                    characters: Option<String>,
                    json_field: Option<String>,
                    source: RandomSource|
     -> Result<Generate, PlaybookError> {
        if !(8..=4096).contains(&length) {
            return Err(invalid(
                path,
                format!("length = {length}: use 8 to 4096 characters"),
            ));
        }
        let alphabet: Vec<char> = match characters {
            Some(chars) => {
                let mut unique: Vec<char> = chars.chars().collect();
                unique.sort_unstable();
                unique.dedup();
                if unique.len() < 2 {
                    return Err(invalid(
                        path,
                        "characters: give at least two different characters".to_owned(),
                    ));
                }
                unique
            }
            None => ALPHABETS
                .iter()
                .find(|(name, _)| *name == alphabet)
                .map(|(_, chars)| chars.chars().collect())
                .ok_or_else(|| {
                    invalid(
                        path,
                        format!(
                            "alphabet `{alphabet}`: use one of {} (or `characters = \"...\"`)",
                            ALPHABETS
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?,
        };
        Ok(Generate {
            length,
            alphabet,
            json_field,
            source,
        })
    };
    match kind.kind.as_deref() {
        Some("random") => {
            let f: RandomFile = toml::from_str(text).map_err(|e| located_error(path, text, &e))?;
            Ok(Playbook::Random(generate(
                f.length,
                &f.alphabet,
                f.characters,
                f.json_field,
                f.source,
            )?))
        }
        Some("command") => {
            let f: CommandFile = toml::from_str(text).map_err(|e| located_error(path, text, &e))?;
            if f.install.is_empty() {
                return Err(invalid(
                    path,
                    "install: give the command as a list, e.g. [\"/usr/local/bin/install-key\", \"--service\", \"billing\"]".to_owned(),
                ));
            }
            if f.test.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(path, "test: an empty command".to_owned()));
            }
            let timeout = humantime::parse_duration(&f.timeout)
                .map_err(|e| invalid(path, format!("timeout = \"{}\": {e}", f.timeout)))?;
            Ok(Playbook::Command {
                generate: generate(f.length, &f.alphabet, f.characters, f.json_field, f.source)?,
                install: f.install,
                test: f.test,
                timeout,
            })
        }
        Some("iam-access-key") => {
            let f: AccessKeyFile =
                toml::from_str(text).map_err(|e| located_error(path, text, &e))?;
            let duration = |key: &str, text: &str| {
                humantime::parse_duration(text)
                    .map_err(|e| invalid(path, format!("{key} = \"{text}\": {e}")))
            };
            if f.user.trim().is_empty() {
                return Err(invalid(path, "user: the IAM user name is empty".to_owned()));
            }
            Ok(Playbook::IamAccessKey(AccessKeyPlaybook {
                propagation_timeout: duration("propagation_timeout", &f.propagation_timeout)?,
                delete_after: duration("delete_after", &f.delete_after)?,
                user: f.user,
                id_field: f.id_field,
                secret_field: f.secret_field,
            }))
        }
        Some("http") => {
            let f: HttpFile = toml::from_str(text).map_err(|e| located_error(path, text, &e))?;
            let timeout = humantime::parse_duration(&f.timeout)
                .map_err(|e| invalid(path, format!("timeout = \"{}\": {e}", f.timeout)))?;
            // Every URL must be HTTPS, and every placeholder known where it is used.
            let checks: [(&str, Option<&HttpRequest>, &[&str]); 3] = [
                ("create", Some(&f.create), &["current", "current_id"]),
                ("test", f.test.as_ref(), &["pending", "pending_id"]),
                (
                    "revoke",
                    f.revoke.as_ref(),
                    &["old_id", "pending", "pending_id"],
                ),
            ];
            for (name, request, allowed) in checks {
                let Some(request) = request else { continue };
                if !request.url.starts_with("https://") {
                    return Err(invalid(
                        path,
                        format!(
                            "[{name}] url: `{}` must be https:// (TLS is always verified)",
                            request.url
                        ),
                    ));
                }
                let values: Vec<(&str, &str)> = allowed.iter().map(|a| (*a, "")).collect();
                let texts = std::iter::once(&request.url)
                    .chain(request.headers.values())
                    .chain(request.body.iter());
                for text in texts {
                    render(text, &values).map_err(|e| invalid(path, format!("[{name}]: {e}")))?;
                }
            }
            if f.id_field.is_some() && f.json_field.is_none() {
                return Err(invalid(
                    path,
                    "id_field needs json_field (a JSON object secret)".to_owned(),
                ));
            }
            if f.id_field.is_some() && f.id_pointer.is_none() {
                return Err(invalid(
                    path,
                    "id_field needs id_pointer (where the create response has the id)".to_owned(),
                ));
            }
            Ok(Playbook::Http(Box::new(HttpPlaybook {
                create: f.create,
                test: f.test,
                revoke: f.revoke,
                key_pointer: f.key_pointer,
                id_pointer: f.id_pointer,
                json_field: f.json_field,
                id_field: f.id_field,
                ca_file: f.ca_file,
                timeout,
            })))
        }
        Some("native") => {
            let f: NativeFile = toml::from_str(text).map_err(|e| located_error(path, text, &e))?;
            let duration = |key: &str, text: &str| {
                humantime::parse_duration(text)
                    .map_err(|e| invalid(path, format!("{key} = \"{text}\": {e}")))
            };
            Ok(Playbook::Native {
                timeout: duration("timeout", &f.timeout)?,
                poll: duration("poll", &f.poll)?,
            })
        }
        Some("trial") => Err(invalid(
            path,
            "this is a trial playbook ([trial] playbook in config.toml), not a rotation playbook"
                .to_owned(),
        )),
        Some(other) => Err(invalid(
            path,
            format!("unknown kind `{other}` (random, command, iam-access-key, http, native)"),
        )),
        None => Err(invalid(
            path,
            "missing `kind = \"...\"` (random, command, iam-access-key, http, native)".to_owned(),
        )),
    }
}

/// Draws `length` characters from `alphabet` using `bytes` as the randomness, without bias
/// (rejection sampling: a byte is used only below the largest multiple of the alphabet's
/// size). Returns None when `bytes` runs out; the caller asks for more.
pub fn draw(alphabet: &[char], length: usize, bytes: &[u8]) -> Option<String> {
    let n = alphabet.len();
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(length);
    let mut count = 0;
    for &b in bytes {
        if count == length {
            break;
        }
        if usize::from(b) < limit {
            out.push(alphabet[usize::from(b) % n]);
            count += 1;
        }
    }
    (count == length).then_some(out)
}

/// How many random bytes to ask for so that [`draw`] almost never runs out.
pub fn bytes_needed(alphabet: &[char], length: usize) -> usize {
    let n = alphabet.len();
    let limit = 256 - (256 % n);
    // Expected bytes per character is 256/limit (< 2); ask for twice that plus slack.
    (length * 2 * 256).div_ceil(limit) + 16
}

/// The new secret string: `value`, or the current JSON object with `field` set to it.
pub fn compose(
    current: &SecretValue,
    field: Option<&str>,
    value: &str,
) -> Result<SecretValue, String> {
    let Some(field) = field else {
        return Ok(SecretValue::new(value.to_owned()));
    };
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(current.expose()).map_err(|_| {
            format!("json_field `{field}`: the current secret is not a JSON object")
        })?;
    object.insert(
        field.to_owned(),
        serde_json::Value::String(value.to_owned()),
    );
    Ok(SecretValue::new(
        serde_json::Value::Object(object).to_string(),
    ))
}

/// A millisecond time as RFC 3339 (UTC, to the second).
pub(crate) fn format_ms(t: whittle_state::Timestamp) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(t.0))
        .to_string()
}

pub(crate) fn as_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_format() {
        let v = SecretValue::new("hunter2-very-secret".to_owned());
        assert_eq!(format!("{v}"), "[redacted]");
        assert_eq!(format!("{v:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&v)), "Some([redacted])");
        assert_eq!(v.expose(), "hunter2-very-secret");
    }

    #[test]
    fn playbooks_parse_and_bad_ones_are_located() {
        let random = parse(
            "r.toml",
            "kind = \"random\"\nlength = 40\nalphabet = \"hex\"\njson_field = \"api_key\"\n",
        )
        .expect("random");
        let Playbook::Random(g) = &random else {
            panic!("{random:?}")
        };
        assert_eq!((g.length, g.alphabet.len()), (40, 16));
        assert_eq!(g.json_field.as_deref(), Some("api_key"));
        let command = parse(
            "c.toml",
            "kind = \"command\"\ninstall = [\"/bin/sh\", \"-c\", \"cat > /dev/null\"]\ntimeout = \"5s\"\n",
        )
        .expect("command");
        assert_eq!(command.kind(), "command");

        let cases = [
            ("length = 3", "length = 3: use 8 to 4096"),
            (
                "kind = \"random\"\nlenght = 3",
                "c.toml:2:1: unknown field `lenght`",
            ),
            (
                "kind = \"random\"\nalphabet = \"emoji\"",
                "alphabet `emoji`: use one of",
            ),
            ("kind = \"command\"", "c.toml:1:1: missing field `install`"),
            (
                "kind = \"command\"\ninstall = []",
                "install: give the command as a list",
            ),
            ("kind = \"native\"\npoll = \"soon\"", "poll = \"soon\""),
            (
                "kind = \"http\"\nkey_pointer = \"/key\"\n[create]\nurl = \"http://x\"",
                "[create] url: `http://x` must be https://",
            ),
            (
                "kind = \"http\"\nkey_pointer = \"/key\"\n[create]\nurl = \"https://x/{{pendng}}\"",
                "[create]: `{{pendng}}` is not available here (use {{current}}, {{current_id}})",
            ),
            ("kind = \"magic\"", "unknown kind `magic`"),
            ("kind = 3", "c.toml:1:8: invalid type"),
        ];
        for (text, expected) in cases {
            let text = if text.starts_with("length") {
                format!("kind = \"random\"\n{text}")
            } else {
                text.to_owned()
            };
            let error = parse("c.toml", &text).expect_err(&text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn every_shipped_playbook_parses_and_every_kind_has_one() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut kinds = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).expect("playbooks dir").flatten() {
            let path = entry.path();
            let is_trial = std::fs::read_to_string(&path)
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "kind = \"trial\""));
            if path.extension().is_some_and(|e| e == "toml")
                && path.file_name() != Some("Cargo.toml".as_ref())
                && !is_trial
            {
                let playbook = load(&path).unwrap_or_else(|e| panic!("{e}"));
                kinds.insert(playbook.kind());
            }
        }
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["command", "http", "iam-access-key", "native", "random"]
        );
    }

    #[test]
    fn templates_render_and_name_unknown_placeholders() {
        let values = [("pending", "k3y"), ("pending_id", "7")];
        assert_eq!(
            render("Bearer {{pending}} for {{ pending_id }}", &values).expect("render"),
            "Bearer k3y for 7"
        );
        let error = render("{{current}}", &values).expect_err("unknown");
        assert_eq!(
            error,
            "`{{current}}` is not available here (use {{pending}}, {{pending_id}})"
        );
        assert!(render("{{pending", &values).is_err());
    }

    #[test]
    fn draws_are_unbiased_and_use_only_the_alphabet() {
        let alphabet: Vec<char> = "abc".chars().collect();
        // 255 = 3 * 85: bytes 0..255 are usable, 255 is rejected.
        assert_eq!(draw(&alphabet, 3, &[0, 255, 1, 2]), Some("abc".to_owned()));
        assert_eq!(draw(&alphabet, 3, &[0, 255]), None);
        let hex: Vec<char> = "0123456789abcdef".chars().collect();
        let bytes: Vec<u8> = (0..=255).collect();
        let drawn = draw(&hex, 256, &bytes).expect("enough");
        for c in hex.iter() {
            assert_eq!(drawn.chars().filter(|d| d == c).count(), 16);
        }
        assert!(bytes_needed(&hex, 32) >= 64);
    }

    #[test]
    fn json_fields_are_replaced_in_place() {
        let current = SecretValue::new(r#"{"api_key":"old","user":"svc"}"#.to_owned());
        let new = compose(&current, Some("api_key"), "new").expect("compose");
        let parsed: serde_json::Value = serde_json::from_str(new.expose()).expect("json");
        assert_eq!(parsed["api_key"], "new");
        assert_eq!(parsed["user"], "svc");
        let plain = SecretValue::new("not json".to_owned());
        assert!(compose(&plain, Some("api_key"), "x").is_err());
        assert_eq!(compose(&plain, None, "x").expect("whole").expose(), "x");
    }
}
