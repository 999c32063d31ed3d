//! CloudTrail records: the parts whittle reads, parsed tolerantly and fast.
//!
//! A log file is `{"Records":[...]}` as CloudTrail delivers it (some exports are a bare
//! array). Records are decoded one at a time straight from the file's bytes, borrowing
//! strings where they have no escapes; fields whittle does not read are skipped unparsed.
//! A record that does not fit (a missing `eventTime`, a field of the wrong type) is skipped
//! with its index and reason while the rest of the file is still read. Real data has
//! `readOnly` as a bool or a string, and some pipelines write `@timestamp` for `eventTime`;
//! both are accepted.
//!
//! [`read_log`] reads a file held in memory; [`read_log_stream`] (and
//! [`read_log_stream_limited`]) reads any `std::io::Read` (a gzip decoder, an S3 object
//! body) holding one record at a time, and skips a record larger than the limit
//! ([`DEFAULT_MAX_RECORD_BYTES`]) without holding it.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A string field that is kept only when it is a string; any other JSON value is skipped
/// instead of failing the record (`requestParameters.name` is an object in some services).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lenient<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<Lenient<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Lenient<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(V(std::marker::PhantomData))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'a> Lenient<'a> {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A list of strings where anything else is skipped (`requestParameters.names`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LenientList<'a>(pub Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientList<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// An array of (lenient) strings, or any single value. The field is rare, so the
        /// buffering of an untagged enum costs nothing that matters.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum ListOrOne<'a> {
            List(#[serde(borrow)] Vec<Lenient<'a>>),
            One(#[serde(borrow)] Lenient<'a>),
        }
        Ok(LenientList(match ListOrOne::deserialize(deserializer)? {
            ListOrOne::List(items) => items.into_iter().filter_map(|item| item.0).collect(),
            ListOrOne::One(item) => item.0.into_iter().collect(),
        }))
    }
}

/// The record fields whittle reads. Every field is optional here; [`Record::event`] decides
/// what a usable record needs.
#[derive(Debug, Default, Deserialize)]
pub struct Record<'a> {
    #[serde(rename = "eventTime", alias = "@timestamp", borrow, default)]
    pub event_time: Lenient<'a>,
    #[serde(rename = "eventSource", borrow, default)]
    pub event_source: Lenient<'a>,
    #[serde(rename = "eventName", borrow, default)]
    pub event_name: Lenient<'a>,
    /// `AwsApiCall`, `AwsServiceEvent`, `AwsConsoleSignIn`, `AwsConsoleAction`, …; absent in
    /// records before eventVersion 1.02.
    #[serde(rename = "eventType", borrow, default)]
    pub event_type: Lenient<'a>,
    #[serde(rename = "awsRegion", borrow, default)]
    pub aws_region: Lenient<'a>,
    #[serde(rename = "eventID", borrow, default)]
    pub event_id: Lenient<'a>,
    #[serde(rename = "recipientAccountId", borrow, default)]
    pub recipient_account_id: Lenient<'a>,
    #[serde(rename = "errorCode", borrow, default)]
    pub error_code: Lenient<'a>,
    #[serde(rename = "errorMessage", borrow, default)]
    pub error_message: Lenient<'a>,
    #[serde(rename = "userIdentity", borrow, default)]
    pub user_identity: Option<UserIdentity<'a>>,
    #[serde(rename = "requestParameters", borrow, default)]
    pub request_parameters: Option<RequestParameters<'a>>,
    #[serde(borrow, default)]
    pub resources: Option<Vec<ResourceRef<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserIdentity<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Lenient<'a>,
    #[serde(borrow, default)]
    pub arn: Lenient<'a>,
    #[serde(rename = "accountId", borrow, default)]
    pub account_id: Lenient<'a>,
    #[serde(rename = "sessionContext", borrow, default)]
    pub session_context: Option<SessionContext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SessionContext<'a> {
    #[serde(rename = "sessionIssuer", borrow, default)]
    pub session_issuer: Option<SessionIssuer<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SessionIssuer<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Lenient<'a>,
    #[serde(borrow, default)]
    pub arn: Lenient<'a>,
}

/// The well-known request parameters that name a resource.
#[derive(Debug, Default, Deserialize)]
pub struct RequestParameters<'a> {
    #[serde(rename = "bucketName", borrow, default)]
    pub bucket_name: Lenient<'a>,
    #[serde(borrow, default)]
    pub key: Lenient<'a>,
    #[serde(rename = "tableName", borrow, default)]
    pub table_name: Lenient<'a>,
    #[serde(rename = "secretId", borrow, default)]
    pub secret_id: Lenient<'a>,
    #[serde(borrow, default)]
    pub name: Lenient<'a>,
    #[serde(borrow, default)]
    pub names: LenientList<'a>,
    #[serde(rename = "keyId", borrow, default)]
    pub key_id: Lenient<'a>,
    #[serde(rename = "functionName", borrow, default)]
    pub function_name: Lenient<'a>,
    #[serde(rename = "queueUrl", borrow, default)]
    pub queue_url: Lenient<'a>,
    #[serde(rename = "topicArn", borrow, default)]
    pub topic_arn: Lenient<'a>,
    #[serde(rename = "roleArn", borrow, default)]
    pub role_arn: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResourceRef<'a> {
    #[serde(rename = "ARN", alias = "arn", borrow, default)]
    pub arn: Lenient<'a>,
    #[serde(rename = "ARNPrefix", borrow, default)]
    pub arn_prefix: Lenient<'a>,
}

/// Who made a call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalKind {
    /// A role session (`AssumedRole`): the role is the principal.
    Role,
    /// An IAM user, or a federated session of one.
    User,
    /// The account's root user.
    Root,
    /// An AWS service acting on its own (`AWSService`, `AWSAccount`): no principal of the
    /// account to tighten.
    Service,
    /// No or an unknown `userIdentity.type`.
    Unknown,
}

impl PrincipalKind {
    /// The kind of a `userIdentity.type`.
    pub fn of_identity_type(kind: &str) -> PrincipalKind {
        match kind {
            "AssumedRole" => PrincipalKind::Role,
            "IAMUser" | "FederatedUser" => PrincipalKind::User,
            "Root" => PrincipalKind::Root,
            "AWSService" | "AWSAccount" => PrincipalKind::Service,
            _ => PrincipalKind::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Role => "role",
            PrincipalKind::User => "user",
            PrincipalKind::Root => "root",
            PrincipalKind::Service => "service",
            PrincipalKind::Unknown => "unknown",
        }
    }
}

/// A record reduced to what mining needs, borrowing from the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub source: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub region: Option<Cow<'a, str>>,
    pub account: Option<Cow<'a, str>>,
    pub kind: PrincipalKind,
    /// The role ARN (for sessions, the role that issued them), user or root ARN; `None` for
    /// services.
    pub principal: Option<Cow<'a, str>>,
    /// The role session name (often the Lambda function's name).
    pub session: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
    pub error_code: Option<Cow<'a, str>>,
    pub error_message: Option<Cow<'a, str>>,
}

impl<'a> Record<'a> {
    /// The usable core of a record, or why it is not usable.
    pub fn event(&self) -> Result<Event<'_>, &'static str> {
        let time = self
            .event_time
            .as_deref()
            .ok_or("no eventTime (field names are case-sensitive)")?;
        let time_ms = parse_time(time).ok_or("eventTime is not an ISO 8601 UTC time")?;
        let source = self.event_source.0.as_ref().ok_or("no eventSource")?;
        let name = self.event_name.0.as_ref().ok_or("no eventName")?;
        let identity = self.user_identity.as_ref().ok_or("no userIdentity")?;
        let (kind, principal, session) = principal_of(identity);
        Ok(Event {
            time_ms,
            source: Cow::Borrowed(source.as_ref()),
            name: Cow::Borrowed(name.as_ref()),
            region: self.aws_region.as_deref().map(Cow::Borrowed),
            account: self
                .recipient_account_id
                .as_deref()
                .or(identity.account_id.as_deref())
                .map(Cow::Borrowed),
            kind,
            principal,
            session,
            event_id: self.event_id.as_deref().map(Cow::Borrowed),
            error_code: self.error_code.as_deref().map(Cow::Borrowed),
            error_message: self.error_message.as_deref().map(Cow::Borrowed),
        })
    }
}

/// The principal of a record: for an assumed-role session the role that issued it (from
/// `sessionContext.sessionIssuer.arn`, which keeps the role's path), else derived from the
/// session ARN `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
fn principal_of<'r>(
    identity: &'r UserIdentity<'_>,
) -> (PrincipalKind, Option<Cow<'r, str>>, Option<Cow<'r, str>>) {
    let issuer = identity
        .session_context
        .as_ref()
        .and_then(|c| c.session_issuer.as_ref())
        .and_then(|i| i.arn.as_deref());
    principal_of_identity(
        identity.kind.as_deref().unwrap_or(""),
        identity.arn.as_deref(),
        issuer,
    )
}

/// The principal kind, principal and session of an identity given as its `type`, `arn` and
/// `sessionContext.sessionIssuer.arn`: what [`Record::event`] derives, for callers that read
/// those three fields elsewhere (the Athena source reads them as query columns).
pub fn principal_of_identity<'r>(
    kind: &str,
    arn: Option<&'r str>,
    issuer: Option<&'r str>,
) -> (PrincipalKind, Option<Cow<'r, str>>, Option<Cow<'r, str>>) {
    match kind {
        "AssumedRole" => {
            let session = arn
                .and_then(|a| a.rsplit_once('/'))
                .map(|(_, s)| Cow::Borrowed(s));
            let role = match issuer {
                Some(role) => Some(Cow::Borrowed(role)),
                None => arn.and_then(role_of_session_arn).map(Cow::Owned),
            };
            (PrincipalKind::Role, role, session)
        }
        "IAMUser" => (PrincipalKind::User, arn.map(Cow::Borrowed), None),
        "FederatedUser" => (
            PrincipalKind::User,
            issuer.or(arn).map(Cow::Borrowed),
            arn.and_then(|a| a.rsplit_once('/'))
                .map(|(_, s)| Cow::Borrowed(s)),
        ),
        "Root" => (PrincipalKind::Root, arn.map(Cow::Borrowed), None),
        "AWSService" | "AWSAccount" => (PrincipalKind::Service, None, None),
        _ => (PrincipalKind::Unknown, None, None),
    }
}

/// `arn:aws:sts::123:assumed-role/Role/session` -> `arn:aws:iam::123:role/Role`.
pub fn role_of_session_arn(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sts"), Some(_), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let rest = resource.strip_prefix("assumed-role/")?;
    let (role, _session) = rest.rsplit_once('/')?;
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

/// Parses `2026-11-24T10:15:30Z`, with optional fractional seconds and a `Z` or `+00:00`
/// offset, into milliseconds since the Unix epoch. Other offsets are applied.
pub fn parse_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (i, &c) in frac[..digits].iter().take(3).enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &frac[digits..];
    }
    let offset_minutes = match rest {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(digits[0] - b'0') * 10 + i64::from(digits[1] - b'0');
            let m = i64::from(digits[2] - b'0') * 10 + i64::from(digits[3] - b'0');
            if *sign == b'+' {
                h * 60 + m
            } else {
                -(h * 60 + m)
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(
        ((days * 86_400 + hour * 3600 + minute * 60 + second) - offset_minutes * 60) * 1000
            + millis,
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day number (days since the Unix epoch) of a millisecond time.
pub fn day_of(time_ms: i64) -> u32 {
    u32::try_from(time_ms.div_euclid(86_400_000)).unwrap_or(0)
}

/// Formats milliseconds since the epoch as `2026-11-24T10:15:30Z` (whole seconds).
pub fn format_time(time_ms: i64) -> String {
    let secs = time_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// What reading a log file gave, besides its records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    /// Records handed to the sink (good or skipped).
    pub records: u64,
    /// Set when the file could not be read to its end: the position and reason. Records
    /// before that point were still delivered.
    pub error: Option<String>,
}

/// One record of a file: decoded, or skipped with its index and reason.
// Items are handed to a sink by value and never stored; boxing the record would cost an
// allocation per record in the hot loop.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Item<'a> {
    Record(Record<'a>),
    Skipped { index: u64, reason: String },
}

/// Reads a whole log file held in memory, calling `sink` for every record in order.
///
/// The fast path decodes records straight from `bytes`. If it stops (a record of the wrong
/// shape, a NUL or invalid UTF-8 byte inside a record, a file cut short), the file is read
/// again from that record on by [`split`], which finds where each record begins and ends
/// without decoding it, so that only the bad record is skipped; the records before it are
/// not delivered twice. The file is in memory already and records are decoded in place, so
/// no record size limit applies here (files too large to hold go to [`read_log_stream`]).
pub fn read_log<'a>(bytes: &'a [u8], sink: &mut dyn FnMut(Item<'a>)) -> FileOutcome {
    let mut delivered = 0u64;
    let first = {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        de.deserialize_any(FileVisitor {
            sink: &mut |item: Record<'a>| {
                delivered += 1;
                sink(Item::Record(item));
            },
        })
        .and_then(|()| de.end())
    };
    if first.is_ok() {
        return FileOutcome {
            records: delivered,
            error: None,
        };
    }
    // serde_json cannot go on after a syntax error (a control character or invalid UTF-8
    // in a string is one), so the rest of the file is split into records here.
    let mut input = SliceInput {
        bytes,
        pos: 0,
        mark: 0,
    };
    let result = split(&mut input, delivered, &mut |input, index, offset| {
        sink(decode_record(input.captured(), index, offset));
    });
    outcome(result)
}

/// The largest record the stream reader holds, by default: 16 MiB. CloudTrail caps what a
/// record carries (`requestParameters` and `responseElements` are left out past about
/// 100 KB each; an event data store's largest events are 1 MB), so a real record is far
/// smaller; one past this is not a CloudTrail record, and holding it would let one file
/// take a worker's memory.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Reads a log file from a stream (for files too large to hold in memory, or an S3 object
/// body): records are split out and decoded one at a time, so memory stays bounded by the
/// largest record, at most [`DEFAULT_MAX_RECORD_BYTES`]. A record that does not decode
/// (the wrong shape, a NUL or invalid UTF-8 byte) or is larger is skipped with its index
/// and reason and the rest of the file is read.
pub fn read_log_stream<R: std::io::Read>(
    reader: R,
    sink: &mut dyn for<'r> FnMut(Item<'r>),
) -> FileOutcome {
    read_log_stream_limited(reader, DEFAULT_MAX_RECORD_BYTES, sink)
}

/// [`read_log_stream`] with the largest record to hold: a record of more than
/// `max_record_bytes` bytes is skipped as `Item::Skipped` with the reason `record too large:
/// N bytes (the record starts at byte O of the file), over the M-byte limit`, without ever
/// holding more than `max_record_bytes` of it; the rest of the file is read.
pub fn read_log_stream_limited<R: std::io::Read>(
    reader: R,
    max_record_bytes: usize,
    sink: &mut dyn for<'r> FnMut(Item<'r>),
) -> FileOutcome {
    let mut input = StreamInput::new(reader, max_record_bytes);
    let result = split(&mut input, 0, &mut |input, index, offset| {
        if input.oversize {
            let size = input.offset() - offset;
            sink(Item::Skipped {
                index,
                reason: format!(
                    "record too large: {size} bytes (the record starts at byte {offset} of the file), over the {}-byte limit",
                    input.max_record
                ),
            });
        } else {
            sink(decode_record(input.captured(), index, offset));
        }
    });
    outcome(result)
}

fn outcome(result: Result<u64, Stop>) -> FileOutcome {
    match result {
        Ok(records) => FileOutcome {
            records,
            error: None,
        },
        Err(Stop { records, reason }) => FileOutcome {
            records,
            error: Some(match reason {
                Broken::Json(reason) => format!("after record {records}: invalid JSON: {reason}"),
                Broken::Read(at, e) => {
                    format!("after record {records}: cannot read at byte {at}: {e}")
                }
            }),
        },
    }
}

/// Decodes one record's bytes (as [`split`] found them), or says why it is skipped.
fn decode_record(raw: &[u8], index: u64, offset: u64) -> Item<'_> {
    match serde_json::from_slice::<Record<'_>>(raw) {
        Ok(record) => Item::Record(record),
        Err(e) if e.is_data() => Item::Skipped {
            index,
            reason: format!("record does not fit the CloudTrail shape: {e}"),
        },
        Err(e) => Item::Skipped {
            index,
            // The reason's class is the text before the first colon: keep it constant.
            reason: format!(
                "record is not valid JSON: {e} (the record starts at byte {offset} of the file)"
            ),
        },
    }
}

/// Why [`split`] stopped before the end of a file.
#[derive(Debug)]
struct Stop {
    /// Records found before the stop (delivered or skipped).
    records: u64,
    reason: Broken,
}

#[derive(Debug)]
enum Broken {
    /// The file's structure breaks here.
    Json(String),
    /// Reading failed at this byte (a truncated or corrupt gzip stream).
    Read(u64, std::io::Error),
}

/// The bytes [`split`] reads: a file in memory or a stream.
trait Input {
    /// The next byte without taking it; `None` at the end.
    fn peek(&mut self) -> std::io::Result<Option<u8>>;
    /// Takes the byte [`Input::peek`] returned.
    fn bump(&mut self);
    /// The position of the next byte in the file.
    fn offset(&self) -> u64;
    /// Starts keeping the bytes taken from here on (one record).
    fn start_record(&mut self);
    /// Stops keeping bytes; [`split`] then hands the input to its callback, which reads the
    /// kept bytes.
    fn end_record(&mut self);

    /// Takes the bytes of a string's inside that need no look (neither `"` nor a
    /// backslash) from what is at hand, without reading more; a fast path for long strings.
    fn skip_plain(&mut self) {}

    fn next(&mut self) -> std::io::Result<Option<u8>> {
        let byte = self.peek()?;
        if byte.is_some() {
            self.bump();
        }
        Ok(byte)
    }
}

struct SliceInput<'a> {
    bytes: &'a [u8],
    pos: usize,
    mark: usize,
}

impl<'a> SliceInput<'a> {
    /// The bytes of the last record.
    fn captured(&self) -> &'a [u8] {
        &self.bytes[self.mark..self.pos]
    }
}

impl Input for SliceInput<'_> {
    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        Ok(self.bytes.get(self.pos).copied())
    }
    fn bump(&mut self) {
        self.pos += 1;
    }
    fn offset(&self) -> u64 {
        self.pos as u64
    }
    fn start_record(&mut self) {
        self.mark = self.pos;
    }
    fn end_record(&mut self) {}
    fn skip_plain(&mut self) {
        let rest = &self.bytes[self.pos..];
        self.pos += rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
    }
}

struct StreamInput<R> {
    reader: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// The file position of `buf[0]`.
    offset: u64,
    /// While a record is read: where it starts in `buf` (or 0 after a refill, the start
    /// having moved to `record`).
    mark: Option<usize>,
    /// The record read so far, from earlier fills of `buf`, then the whole record; never
    /// more than `max_record` bytes (nor capacity).
    record: Vec<u8>,
    max_record: usize,
    /// The record being read is larger than `max_record`: its bytes are not kept.
    oversize: bool,
}

impl<R> StreamInput<R> {
    fn new(reader: R, max_record: usize) -> StreamInput<R> {
        StreamInput {
            reader,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            pos: 0,
            len: 0,
            offset: 0,
            mark: None,
            record: Vec::new(),
            max_record,
            oversize: false,
        }
    }

    /// The bytes of the last record.
    fn captured(&self) -> &[u8] {
        &self.record
    }

    /// Keeps `buf[from..to]` as more of the record, unless that makes it too large.
    fn keep(&mut self, from: usize, to: usize) {
        if self.oversize {
            return;
        }
        let chunk = &self.buf[from..to];
        let want = self.record.len() + chunk.len();
        if want > self.max_record {
            self.oversize = true;
            // Give the memory back now: the record is not decoded.
            self.record = Vec::new();
            return;
        }
        if want > self.record.capacity() {
            // Doubling, but never past the limit.
            let target = (self.record.capacity() * 2).max(want).min(self.max_record);
            self.record.reserve_exact(target - self.record.len());
        }
        self.record.extend_from_slice(chunk);
    }
}

impl<R: std::io::Read> Input for StreamInput<R> {
    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        if self.pos == self.len {
            if let Some(mark) = self.mark {
                self.keep(mark, self.len);
                self.mark = Some(0);
            }
            self.offset += self.len as u64;
            self.pos = 0;
            self.len = 0;
            self.len = loop {
                match self.reader.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
        }
        Ok(self.buf[..self.len].get(self.pos).copied())
    }
    fn bump(&mut self) {
        self.pos += 1;
    }
    fn offset(&self) -> u64 {
        self.offset + self.pos as u64
    }
    fn start_record(&mut self) {
        self.record.clear();
        self.oversize = false;
        self.mark = Some(self.pos);
    }
    fn end_record(&mut self) {
        if let Some(mark) = self.mark.take() {
            self.keep(mark, self.pos);
        }
    }
    fn skip_plain(&mut self) {
        let rest = &self.buf[self.pos..self.len];
        self.pos += rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
    }
}

/// Reads the structure of a log file (`{"Records":[...]}`, other keys skipped, or a bare
/// array) without decoding the records: for each record after the first `skip`, its bytes
/// are kept and `record` is called with the input, the record's index and where it starts.
/// Inside a string any byte is taken as it is (a backslash escapes the next one), so a NUL,
/// a control character or invalid UTF-8 stays inside its record, which then fails to decode
/// alone. Returns the number of records, or where and why the file's structure broke.
fn split<I: Input>(
    input: &mut I,
    skip: u64,
    record: &mut dyn FnMut(&mut I, u64, u64),
) -> Result<u64, Stop> {
    let mut splitter = Splitter {
        input,
        skip,
        index: 0,
        record,
    };
    match splitter.file() {
        Ok(()) => Ok(splitter.index),
        Err(reason) => Err(Stop {
            records: splitter.index,
            reason,
        }),
    }
}

struct Splitter<'i, 'r, I> {
    input: &'i mut I,
    skip: u64,
    /// Records found so far.
    index: u64,
    record: &'r mut dyn FnMut(&mut I, u64, u64),
}

impl<I: Input> Splitter<'_, '_, I> {
    fn peek(&mut self) -> Result<Option<u8>, Broken> {
        let at = self.input.offset();
        self.input.peek().map_err(|e| Broken::Read(at, e))
    }

    fn next(&mut self) -> Result<Option<u8>, Broken> {
        let at = self.input.offset();
        self.input.next().map_err(|e| Broken::Read(at, e))
    }

    /// Skips white space; returns the next byte, not taken.
    fn skip_space(&mut self) -> Result<Option<u8>, Broken> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.input.bump(),
                other => return Ok(other),
            }
        }
    }

    fn unexpected(&self, byte: Option<u8>, expected: &str) -> Broken {
        let at = self.input.offset();
        Broken::Json(match byte {
            None => format!("EOF at byte {at} where {expected} was expected"),
            Some(b) if b.is_ascii_graphic() => {
                format!("`{}` at byte {at} where {expected} was expected", b as char)
            }
            Some(b) => format!("byte 0x{b:02x} at byte {at} where {expected} was expected"),
        })
    }

    /// Takes `byte` or fails.
    fn expect(&mut self, byte: u8, expected: &str) -> Result<(), Broken> {
        match self.skip_space()? {
            Some(b) if b == byte => {
                self.input.bump();
                Ok(())
            }
            other => Err(self.unexpected(other, expected)),
        }
    }

    fn file(&mut self) -> Result<(), Broken> {
        match self.skip_space()? {
            Some(b'{') => self.object()?,
            Some(b'[') => self.records()?,
            other => {
                return Err(self.unexpected(
                    other,
                    r#"a CloudTrail log file ({"Records":[...]} or an array of records)"#,
                ));
            }
        }
        match self.skip_space()? {
            None => Ok(()),
            other => Err(self.unexpected(other, "the end of the file")),
        }
    }

    /// The top-level object: the `Records` array, other keys skipped.
    fn object(&mut self) -> Result<(), Broken> {
        self.input.bump();
        let mut found = false;
        if self.skip_space()? == Some(b'}') {
            self.input.bump();
        } else {
            loop {
                self.expect(b'"', "a key")?;
                let is_records = self.key_is_records()?;
                self.expect(b':', "`:`")?;
                if is_records {
                    match self.skip_space()? {
                        Some(b'[') => self.records()?,
                        other => return Err(self.unexpected(other, "the `Records` array")),
                    }
                    found = true;
                } else {
                    match self.skip_space()? {
                        Some(b',' | b'}' | b']' | b':') | None => {
                            let byte = self.peek()?;
                            return Err(self.unexpected(byte, "a value"));
                        }
                        Some(_) => self.value()?,
                    }
                }
                match self.skip_space()? {
                    Some(b',') => self.input.bump(),
                    Some(b'}') => {
                        self.input.bump();
                        break;
                    }
                    other => return Err(self.unexpected(other, "`,` or `}`")),
                }
            }
        }
        if found {
            Ok(())
        } else {
            Err(Broken::Json(
                "no `Records` array: not a CloudTrail log file".to_owned(),
            ))
        }
    }

    /// Reads a key (its opening quote taken) and tells whether it is `Records`.
    fn key_is_records(&mut self) -> Result<bool, Broken> {
        const RECORDS: &[u8] = b"Records";
        let mut matched = 0usize;
        let mut plain = true;
        loop {
            match self.next()? {
                Some(b'"') => return Ok(plain && matched == RECORDS.len()),
                Some(b'\\') => {
                    // Escapes in the key `Records` are not worth decoding.
                    plain = false;
                    if self.next()?.is_none() {
                        return Err(self.unexpected(None, "the end of a key"));
                    }
                }
                Some(b) => {
                    if RECORDS.get(matched) == Some(&b) {
                        matched += 1;
                    } else {
                        plain = false;
                    }
                }
                None => return Err(self.unexpected(None, "the end of a key")),
            }
        }
    }

    /// The records array (its `[` not taken yet).
    fn records(&mut self) -> Result<(), Broken> {
        self.input.bump();
        if self.skip_space()? == Some(b']') {
            self.input.bump();
            return Ok(());
        }
        loop {
            let byte = self.skip_space()?;
            if matches!(byte, Some(b',' | b']' | b'}' | b':') | None) {
                return Err(self.unexpected(byte, "a record"));
            }
            let at = self.input.offset();
            if self.index >= self.skip {
                self.input.start_record();
                self.value()?;
                self.input.end_record();
                (self.record)(self.input, self.index, at);
            } else {
                self.value()?;
            }
            self.index += 1;
            match self.skip_space()? {
                Some(b',') => self.input.bump(),
                Some(b']') => {
                    self.input.bump();
                    return Ok(());
                }
                other => return Err(self.unexpected(other, "`,` or `]`")),
            }
        }
    }

    /// Takes one value, whatever its bytes: a string, an object or array (brackets counted
    /// outside strings), or anything else up to the next delimiter. The value is checked
    /// when it is decoded.
    fn value(&mut self) -> Result<(), Broken> {
        match self.next()? {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                let mut depth = 1usize;
                loop {
                    match self.next()? {
                        Some(b'"') => self.string()?,
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(());
                            }
                        }
                        Some(_) => {}
                        None => return Err(self.unexpected(None, "the end of a record")),
                    }
                }
            }
            Some(_) => loop {
                match self.peek()? {
                    None
                    | Some(
                        b',' | b']' | b'}' | b'[' | b'{' | b'"' | b':' | b' ' | b'\t' | b'\n'
                        | b'\r',
                    ) => return Ok(()),
                    Some(_) => self.input.bump(),
                }
            },
            None => Err(self.unexpected(None, "a value")),
        }
    }

    /// The rest of a string whose opening quote was taken.
    fn string(&mut self) -> Result<(), Broken> {
        loop {
            self.input.skip_plain();
            match self.next()? {
                Some(b'"') => return Ok(()),
                Some(b'\\') => {
                    if self.next()?.is_none() {
                        return Err(self.unexpected(None, "the end of a string"));
                    }
                }
                Some(_) => {}
                None => return Err(self.unexpected(None, "the end of a string")),
            }
        }
    }
}

/// Visits the top level of a log file: `{"Records": [...]}` (other keys ignored) or a bare
/// array, handing each record to `sink`.
struct FileVisitor<'s, F> {
    sink: &'s mut F,
}

impl<'de, F: FnMut(Record<'de>)> Visitor<'de> for FileVisitor<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a CloudTrail log file: {"Records":[...]} or an array of records"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "Records" {
                map.next_value_seed(RecordsSeed {
                    sink: &mut *self.sink,
                })?;
                found = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(de::Error::custom(
                "no `Records` array: not a CloudTrail log file",
            ))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        RecordsSeed { sink: self.sink }.visit_seq(seq)
    }
}

struct RecordsSeed<'s, F> {
    sink: &'s mut F,
}

impl<'de, F: FnMut(Record<'de>)> DeserializeSeed<'de> for RecordsSeed<'_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Record<'de>)> Visitor<'de> for RecordsSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of CloudTrail records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Record<'de>>()? {
            (self.sink)(item);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(bytes: &[u8]) -> (Vec<String>, Vec<(u64, String)>, FileOutcome) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let outcome = read_log(bytes, &mut |item| match item {
            Item::Record(r) => good.push(
                r.event()
                    .map(|e| format!("{}:{}", e.source, e.name))
                    .unwrap_or_else(|reason| format!("unusable: {reason}")),
            ),
            Item::Skipped { index, reason } => bad.push((index, reason)),
        });
        (good, bad, outcome)
    }

    const ROLE_RECORD: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole",
        "principalId":"AROA:fn","arn":"arn:aws:sts::111122223333:assumed-role/app-orders/orders-fn",
        "accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role",
        "arn":"arn:aws:iam::111122223333:role/service/app-orders","userName":"app-orders"}}},
        "eventTime":"2026-11-20T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject",
        "awsRegion":"us-east-1","requestParameters":{"bucketName":"orders","key":"a/b.json"},
        "eventID":"e-1","readOnly":true,"recipientAccountId":"111122223333","unknownField":[1,{"x":2}]}"#;

    #[test]
    fn reads_records_object_and_bare_array() {
        let file = format!(r#"{{"Records":[{ROLE_RECORD},{ROLE_RECORD}]}}"#);
        let (good, bad, outcome) = collect(file.as_bytes());
        assert_eq!(good, vec!["s3.amazonaws.com:GetObject"; 2]);
        assert!(bad.is_empty());
        assert_eq!(
            outcome,
            FileOutcome {
                records: 2,
                error: None
            }
        );

        let array = format!("[{ROLE_RECORD}]");
        let (good, _, outcome) = collect(array.as_bytes());
        assert_eq!(good.len(), 1);
        assert!(outcome.error.is_none());
    }

    #[test]
    fn principal_is_the_issuing_role_with_its_path_and_the_session_is_kept() {
        let record: Record = serde_json::from_str(ROLE_RECORD).expect("parses");
        let event = record.event().expect("usable");
        assert_eq!(event.kind, PrincipalKind::Role);
        assert_eq!(
            event.principal.as_deref(),
            Some("arn:aws:iam::111122223333:role/service/app-orders")
        );
        assert_eq!(event.session.as_deref(), Some("orders-fn"));
        assert_eq!(event.account.as_deref(), Some("111122223333"));
        let params = record.request_parameters.as_ref().expect("params");
        assert_eq!(params.bucket_name.as_deref(), Some("orders"));
        assert_eq!(params.key.as_deref(), Some("a/b.json"));
    }

    #[test]
    fn role_is_derived_from_the_session_arn_without_an_issuer() {
        assert_eq!(
            role_of_session_arn("arn:aws:sts::123456789012:assumed-role/app-x/sess").as_deref(),
            Some("arn:aws:iam::123456789012:role/app-x")
        );
        assert_eq!(
            role_of_session_arn("arn:aws:iam::123456789012:user/bob"),
            None
        );
    }

    #[test]
    fn a_bad_record_is_skipped_and_the_rest_of_the_file_is_read() {
        // The second record has userIdentity as a string: the wrong shape.
        let file = format!(
            r#"{{"Records":[{ROLE_RECORD},{{"eventTime":"2026-11-20T10:00:00Z","userIdentity":"oops"}},{ROLE_RECORD}]}}"#
        );
        let (good, bad, outcome) = collect(file.as_bytes());
        assert_eq!(good.len(), 2, "{good:?}");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 1);
        assert!(bad[0].1.contains("CloudTrail shape"), "{}", bad[0].1);
        assert_eq!(outcome.records, 3);
        assert!(outcome.error.is_none());
    }

    /// A file of three records whose second holds `bad` inside its `eventName` string.
    fn file_with_a_bad_byte(bad: &[u8]) -> Vec<u8> {
        let second = ROLE_RECORD.replace(r#""GetObject""#, r#""Get@@Object""#);
        let (before, after) = second.split_once("@@").expect("marker");
        let mut file = Vec::new();
        file.extend_from_slice(br#"{"Records":["#);
        file.extend_from_slice(ROLE_RECORD.as_bytes());
        file.push(b',');
        file.extend_from_slice(before.as_bytes());
        file.extend_from_slice(bad);
        file.extend_from_slice(after.as_bytes());
        file.push(b',');
        file.extend_from_slice(ROLE_RECORD.replace("GetObject", "PutObject").as_bytes());
        file.extend_from_slice(b"]}");
        file
    }

    fn collect_stream(bytes: &[u8]) -> (Vec<String>, Vec<(u64, String)>, FileOutcome) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        // A reader that hands out a few bytes at a time, so records straddle reads.
        struct Trickle<'b>(&'b [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(7);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let outcome = read_log_stream(Trickle(bytes), &mut |item| match item {
            Item::Record(r) => good.push(
                r.event()
                    .map(|e| format!("{}:{}", e.source, e.name))
                    .unwrap_or_else(|reason| format!("unusable: {reason}")),
            ),
            Item::Skipped { index, reason } => bad.push((index, reason)),
        });
        (good, bad, outcome)
    }

    #[test]
    fn a_nul_or_invalid_utf8_byte_loses_only_its_record() {
        for (what, bad) in [
            ("NUL", &b"\0"[..]),
            ("invalid UTF-8", &b"\xff\xfe"[..]),
            ("unescaped newline", &b"\n"[..]),
        ] {
            let file = file_with_a_bad_byte(bad);
            for (reader, (good, bad, outcome)) in [
                ("read_log", collect(&file)),
                ("read_log_stream", collect_stream(&file)),
            ] {
                assert_eq!(
                    good,
                    vec!["s3.amazonaws.com:GetObject", "s3.amazonaws.com:PutObject"],
                    "{what} via {reader}: {bad:?} {outcome:?}"
                );
                assert_eq!(bad.len(), 1, "{what} via {reader}: {bad:?}");
                assert_eq!(bad[0].0, 1, "{what} via {reader}");
                assert!(
                    bad[0].1.starts_with("record is not valid JSON: "),
                    "{what} via {reader}: {}",
                    bad[0].1
                );
                assert!(bad[0].1.contains("starts at byte"), "{}", bad[0].1);
                assert_eq!(
                    outcome,
                    FileOutcome {
                        records: 3,
                        error: None
                    },
                    "{what} via {reader}"
                );
            }
        }
    }

    #[test]
    fn a_bad_byte_in_an_ignored_field_keeps_the_record_or_skips_only_it() {
        // NUL in a field whittle does not read: serde still rejects the control character,
        // so the record goes, but nothing after it.
        let file = format!(
            r#"{{"Records":[{ROLE_RECORD},{{"eventTime":"2026-11-20T10:00:00Z","x":"a{}b"}},{ROLE_RECORD}]}}"#,
            '\0'
        );
        for (reader, (good, bad, outcome)) in [
            ("read_log", collect(file.as_bytes())),
            ("read_log_stream", collect_stream(file.as_bytes())),
        ] {
            assert_eq!(good.len() + bad.len(), 3, "{reader}: {good:?} {bad:?}");
            assert_eq!(
                good.last().map(String::as_str),
                Some("s3.amazonaws.com:GetObject")
            );
            assert!(
                bad.iter().all(|(index, _)| *index == 1),
                "{reader}: {bad:?}"
            );
            assert_eq!(outcome.records, 3, "{reader}");
            assert!(outcome.error.is_none(), "{reader}: {outcome:?}");
        }
    }

    #[test]
    fn stream_reads_like_the_in_memory_reader() {
        let shape = format!(
            r#"{{"Other":{{"a":["]","}}"]}},"Records":[{ROLE_RECORD}, {{"eventTime":"2026-11-20T10:00:00Z","userIdentity":"oops"}} ,3,{ROLE_RECORD}],"Tail":null}}"#
        );
        for file in [
            shape.clone(),
            format!("[{ROLE_RECORD}]"),
            "[]".to_owned(),
            r#" {"Records" : [ ] } "#.to_owned(),
        ] {
            let (good_a, bad_a, outcome_a) = collect(file.as_bytes());
            let (good_b, bad_b, outcome_b) = collect_stream(file.as_bytes());
            assert_eq!(good_a, good_b);
            assert_eq!(bad_a.len(), bad_b.len());
            assert_eq!(outcome_a, outcome_b);
        }
        let (good, bad, outcome) = collect_stream(shape.as_bytes());
        assert_eq!(good.len(), 2);
        assert_eq!(
            bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2],
            "{bad:?}"
        );
        assert!(outcome.error.is_none(), "{outcome:?}");
    }

    #[test]
    fn stream_reports_a_cut_file_and_a_file_that_is_not_a_log() {
        let file = format!(r#"{{"Records":[{ROLE_RECORD},{ROLE_RECORD}"#);
        let (good, _, outcome) = collect_stream(&file.as_bytes()[..file.len() - 40]);
        assert_eq!(good.len(), 1);
        let error = outcome.error.expect("an error");
        assert!(error.contains("after record 1"), "{error}");
        let (_, _, outcome) = collect_stream(br#"{"Something":"else"}"#);
        assert!(outcome.error.expect("error").contains("no `Records`"));
        let (_, _, outcome) = collect_stream(b"hello");
        assert!(outcome.error.is_some());
        let (_, _, outcome) = collect_stream(br#"{"Records":[]} trailing"#);
        assert!(outcome.error.is_some());
    }

    /// A reader of `head`, then `fill` repeated `size` times, then `tail`, produced as it is
    /// read (so a huge record costs the test no memory either).
    struct Huge {
        head: Vec<u8>,
        fill: u8,
        size: u64,
        tail: Vec<u8>,
        pos: u64,
    }

    impl std::io::Read for Huge {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let head = self.head.len() as u64;
            let total = head + self.size + self.tail.len() as u64;
            let mut n = 0;
            while n < buf.len() && self.pos < total {
                let p = self.pos;
                let (chunk, len): (&[u8], u64) = if p < head {
                    (&self.head[p as usize..], head - p)
                } else if p < head + self.size {
                    let len = (head + self.size - p).min((buf.len() - n) as u64);
                    buf[n..n + len as usize].fill(self.fill);
                    n += len as usize;
                    self.pos += len;
                    continue;
                } else {
                    let t = (p - head - self.size) as usize;
                    (&self.tail[t..], (self.tail.len() - t) as u64)
                };
                let len = len.min((buf.len() - n) as u64) as usize;
                buf[n..n + len].copy_from_slice(&chunk[..len]);
                n += len;
                self.pos += len as u64;
            }
            Ok(n)
        }
    }

    fn huge_record_file(size: u64) -> Huge {
        Huge {
            head: format!(
                r#"{{"Records":[{ROLE_RECORD},{{"eventTime":"2026-11-20T10:00:00Z","padding":""#
            )
            .into_bytes(),
            fill: b'a',
            size,
            tail: format!(r#""}},{ROLE_RECORD}]}}"#).into_bytes(),
            pos: 0,
        }
    }

    #[test]
    fn a_record_over_the_limit_is_skipped_with_its_place_and_size() {
        let limit = 64 * 1024;
        let size = 1024 * 1024;
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let outcome =
            read_log_stream_limited(huge_record_file(size), limit, &mut |item| match item {
                Item::Record(r) => {
                    good.push(r.event().map(|e| e.name.into_owned()).unwrap_or_default())
                }
                Item::Skipped { index, reason } => bad.push((index, reason)),
            });
        assert_eq!(good, ["GetObject", "GetObject"]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        let (index, reason) = &bad[0];
        assert_eq!(*index, 1);
        let start = format!(r#"{{"Records":[{ROLE_RECORD},"#).len();
        assert!(reason.starts_with("record too large: "), "{reason}");
        assert!(
            reason.contains(&format!("starts at byte {start}")),
            "{reason}"
        );
        let record_size =
            size as usize + r#"{"eventTime":"2026-11-20T10:00:00Z","padding":""}"#.len();
        assert!(reason.contains(&format!("{record_size} bytes")), "{reason}");
        assert!(reason.contains(&format!("{limit}-byte limit")), "{reason}");
        assert_eq!(
            outcome,
            FileOutcome {
                records: 3,
                error: None
            }
        );
    }

    #[test]
    fn the_stream_reader_never_holds_more_than_the_limit() {
        // Driven directly so the buffer can be watched: a 4 MiB record against a 64 KiB
        // limit, and records around the limit on either side.
        let limit = 64 * 1024;
        let mut input = StreamInput::new(huge_record_file(4 << 20), limit);
        let mut peak = 0;
        let mut seen = Vec::new();
        let result = split(&mut input, 0, &mut |input, index, _| {
            peak = peak.max(input.record.capacity());
            seen.push((index, input.oversize));
        });
        assert_eq!(result.ok(), Some(3));
        assert_eq!(seen, [(0, false), (1, true), (2, false)]);
        assert!(peak <= limit, "peak {peak}");
        for (size, over) in [(limit - 100, false), (limit + 100, true)] {
            let mut input = StreamInput::new(huge_record_file(size as u64), limit);
            let mut oversize = Vec::new();
            split(&mut input, 0, &mut |input, _, _| {
                oversize.push(input.oversize)
            })
            .expect("reads");
            assert_eq!(oversize, [false, over, false], "{size}");
        }
    }

    /// The peak resident memory of this process, where Linux tells it.
    fn peak_rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// A single 1 GiB record read with the default limit: skipped, the records around it
    /// kept, and the process never near a gigabyte (about 5 s in a debug build).
    #[test]
    fn a_one_gib_record_is_skipped_in_bounded_memory() {
        let mut kinds = Vec::new();
        let outcome = read_log_stream(huge_record_file(1 << 30), &mut |item| {
            kinds.push(match item {
                Item::Record(_) => "record".to_owned(),
                Item::Skipped { reason, .. } => reason,
            });
        });
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert_eq!(kinds[0], "record");
        let size = (1 << 30) + r#"{"eventTime":"2026-11-20T10:00:00Z","padding":""}"#.len();
        assert!(
            kinds[1].starts_with(&format!("record too large: {size} bytes")),
            "{}",
            kinds[1]
        );
        assert_eq!(kinds[2], "record");
        assert!(outcome.error.is_none());
        if let Some(peak) = peak_rss_bytes() {
            // Other tests run in this process too; a held record alone would be 1 GiB.
            assert!(peak < 512 << 20, "peak resident memory {peak} bytes");
        }
    }

    #[test]
    fn truncated_json_keeps_the_records_before_the_cut() {
        let file = format!(r#"{{"Records":[{ROLE_RECORD},{ROLE_RECORD}"#);
        let (good, _, outcome) = collect(&file.as_bytes()[..file.len() - 40]);
        assert_eq!(good.len(), 1);
        let error = outcome.error.expect("an error");
        assert!(error.contains("after record 1"), "{error}");
    }

    #[test]
    fn a_file_without_records_is_reported() {
        let (_, _, outcome) = collect(br#"{"Something":"else"}"#);
        assert!(outcome.error.expect("error").contains("no `Records`"));
    }

    #[test]
    fn tolerant_fields() {
        let text = r#"{"@timestamp":"2026-11-20T10:00:00.250+00:00","eventSource":"ssm.amazonaws.com",
            "eventName":"GetParameter","readOnly":"true","userIdentity":{"type":"IAMUser",
            "arn":"arn:aws:iam::1:user/bob"},"requestParameters":{"name":{"nested":true},"names":["/a",3,"/b"]}}"#;
        let record: Record = serde_json::from_str(text).expect("parses");
        let event = record.event().expect("usable");
        assert_eq!(event.time_ms % 1000, 250);
        assert_eq!(event.kind, PrincipalKind::User);
        let params = record.request_parameters.as_ref().expect("params");
        assert_eq!(params.name.as_deref(), None);
        assert_eq!(params.names.0, vec!["/a", "/b"]);
    }

    #[test]
    fn unusable_records_say_why() {
        let lower: Record = serde_json::from_str(
            r#"{"eventtime":"2026-11-20T10:00:00Z","eventsource":"s3.amazonaws.com"}"#,
        )
        .expect("parses");
        assert!(
            lower
                .event()
                .expect_err("no time")
                .contains("case-sensitive")
        );
        let no_identity: Record = serde_json::from_str(
            r#"{"eventTime":"2026-11-20T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"X"}"#,
        )
        .expect("parses");
        assert_eq!(
            no_identity.event().expect_err("no identity"),
            "no userIdentity"
        );
    }

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-11-24T10:15:30Z"), Some(1_795_515_330_000));
        assert_eq!(
            parse_time("2026-11-24T12:15:30+02:00"),
            parse_time("2026-11-24T10:15:30Z")
        );
        assert_eq!(parse_time("2026-11-24"), None);
        assert_eq!(parse_time("2026-13-24T10:15:30Z"), None);
        assert_eq!(parse_time("2026-11-24T10:15:30Q"), None);
        let t = parse_time("2024-02-29T23:59:59Z").expect("leap day");
        assert_eq!(format_time(t), "2024-02-29T23:59:59Z");
        assert_eq!(day_of(parse_time("1970-01-02T00:00:00Z").expect("t")), 1);
    }
}

/// Property tests: whatever the bytes, the readers do not panic, count what they hand out,
/// and a corrupted record costs only itself.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            // No regression files in the source tree; a failure prints its input.
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Reads with both readers (the stream one in chunks of `chunk` bytes) and returns, per
    /// reader, each item as `Ok(eventID)` or `Err(index)`, with the outcome.
    fn read_both(bytes: &[u8], chunk: usize) -> [(Vec<Result<String, u64>>, FileOutcome); 2] {
        struct Chunks<'b>(&'b [u8], usize);
        impl std::io::Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(self.1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let item_of = |item: Item<'_>| match item {
            Item::Record(r) => Ok(r.event_id.as_deref().unwrap_or("").to_owned()),
            Item::Skipped { index, .. } => Err(index),
        };
        let mut memory = Vec::new();
        let a = read_log(bytes, &mut |item| memory.push(item_of(item)));
        let mut stream = Vec::new();
        let b = read_log_stream_limited(Chunks(bytes, chunk.max(1)), 4096, &mut |item| {
            stream.push(item_of(item))
        });
        [(memory, a), (stream, b)]
    }

    /// A plausible record without escapes, brackets or quotes in its values, so a byte
    /// changed inside it cannot move where it ends.
    fn record() -> impl Strategy<Value = (String, String)> {
        (
            "[a-z0-9]{1,12}",
            "[A-Z][A-Za-z]{2,20}",
            prop::sample::select(vec!["s3", "ec2", "iam", "kms", "lambda"]),
            prop::sample::select(vec!["AssumedRole", "IAMUser", "Root", "AWSService"]),
            "[a-z0-9 ./:-]{0,40}",
            any::<bool>(),
        )
            .prop_map(|(id, name, service, kind, text, read_only)| {
                let json = format!(
                    r#"{{"eventVersion":"1.08","userIdentity":{{"type":"{kind}","arn":"arn:aws:sts::111122223333:assumed-role/r/{id}","accountId":"111122223333","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::111122223333:role/r"}}}}}},"eventTime":"2026-11-20T10:00:00Z","eventSource":"{service}.amazonaws.com","eventName":"{name}","awsRegion":"eu-west-1","eventType":"AwsApiCall","requestParameters":{{"bucketName":"b","key":"{text}","list":[1,2,{{"x":null}}]}},"eventID":"{id}","readOnly":{read_only}}}"#
                );
                (id, json)
            })
    }

    /// Where a byte may change inside a record without moving its end: not a quote,
    /// bracket or backslash (the structure the splitter follows), replaced by a byte that
    /// is none of those either.
    fn corrupt(record: &str, at: usize, byte: u8, insert: bool) -> Vec<u8> {
        const STRUCTURE: &[u8] = b"\"\\{}[]";
        let mut bytes = record.as_bytes().to_vec();
        let byte = if STRUCTURE.contains(&byte) { 0 } else { byte };
        let candidates: Vec<usize> = (1..bytes.len() - 1)
            .filter(|&i| insert || !STRUCTURE.contains(&bytes[i]))
            .collect();
        let at = candidates[at % candidates.len()];
        if insert {
            bytes.insert(at, byte);
        } else {
            bytes[at] = byte;
        }
        bytes
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), chunk in 1usize..64) {
            for (items, outcome) in read_both(&bytes, chunk) {
                prop_assert_eq!(items.len() as u64, outcome.records);
            }
        }

        #[test]
        fn json_shaped_bytes_never_panic(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "{", "}", "[", "]", ",", ":", "\"", "\\", "\"Records\"", "\"eventTime\"",
                    "\"2026-11-20T10:00:00Z\"", "null", "1", "true", " ", "\u{0}", "\u{ff}", "x",
                ]),
                0..80,
            ),
            chunk in 1usize..64,
        ) {
            let bytes = format!("{{\"Records\":[{}", parts.concat()).into_bytes();
            for (items, outcome) in read_both(&bytes, chunk) {
                prop_assert_eq!(items.len() as u64, outcome.records);
            }
        }
    }

    proptest! {
        #![proptest_config(config(128))]

        #[test]
        fn a_corrupted_record_costs_only_itself(
            records in prop::collection::vec(record(), 1..6),
            victim in any::<prop::sample::Index>(),
            at in any::<usize>(),
            byte in any::<u8>(),
            insert in any::<bool>(),
            bare_array in any::<bool>(),
            chunk in 1usize..200,
        ) {
            let victim = victim.index(records.len());
            let mut file = if bare_array { b"[".to_vec() } else { br#"{"Records":["#.to_vec() };
            for (i, (_, json)) in records.iter().enumerate() {
                if i > 0 {
                    file.push(b',');
                }
                if i == victim {
                    file.extend_from_slice(&corrupt(json, at, byte, insert));
                } else {
                    file.extend_from_slice(json.as_bytes());
                }
            }
            file.extend_from_slice(if bare_array { b"]" } else { b"]}" });
            for (items, outcome) in read_both(&file, chunk) {
                prop_assert_eq!(&outcome, &FileOutcome { records: records.len() as u64, error: None });
                prop_assert_eq!(items.len(), records.len());
                for (i, ((id, _), item)) in records.iter().zip(&items).enumerate() {
                    if i != victim {
                        prop_assert_eq!(item, &Ok(id.clone()), "record {} of {:?}", i, String::from_utf8_lossy(&file));
                    } else if let Err(index) = item {
                        prop_assert_eq!(*index, i as u64);
                    }
                }
            }
        }

        #[test]
        fn any_mutation_of_a_valid_file_never_panics(
            records in prop::collection::vec(record(), 1..4),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
            chunk in 1usize..100,
        ) {
            let mut file = br#"{"Records":["#.to_vec();
            let jsons: Vec<&str> = records.iter().map(|(_, j)| j.as_str()).collect();
            file.extend_from_slice(jsons.join(",").as_bytes());
            file.extend_from_slice(b"]}");
            for (at, byte, kind) in edits {
                let at = at % (file.len() + 1);
                match kind {
                    0 if at < file.len() => file[at] = byte,
                    1 if at < file.len() => {
                        file.remove(at);
                    }
                    _ => file.insert(at, byte),
                }
            }
            for (items, outcome) in read_both(&file, chunk) {
                prop_assert_eq!(items.len() as u64, outcome.records);
            }
        }
    }
}
