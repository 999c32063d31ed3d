//! CloudTrail records outside mining's hot loop: a whole log file (gzip or plain JSON) or a
//! LookupEvents record, read with the planner's typed reader (`whittle_planner::trail`), the
//! same one mining uses. A record that does not fit is skipped, never a panic.

use std::io::Read as _;

use whittle_planner::trail::{Event, Item, Record, read_log};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Calls `sink` with every usable event of a log file's bytes, gzip or plain
/// (`{"Records":[...]}` or a bare array). Err when the file is not gzip or JSON at all.
pub fn for_each_event(bytes: &[u8], mut sink: impl FnMut(&Event<'_>)) -> anyhow::Result<()> {
    let plain;
    let text: &[u8] = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| anyhow::anyhow!("not a gzip trail file: {e}"))?;
        plain = out;
        &plain
    } else {
        bytes
    };
    let outcome = read_log(text, &mut |item| {
        if let Item::Record(record) = item
            && let Ok(event) = record.event()
        {
            sink(&event);
        }
    });
    match outcome.error {
        Some(error) if outcome.records == 0 => Err(anyhow::anyhow!("{error}")),
        _ => Ok(()),
    }
}

/// Calls `sink` with the event of one LookupEvents record (its `CloudTrailEvent` string), if
/// it is a usable record.
pub fn with_lookup_event(text: &str, mut sink: impl FnMut(&Event<'_>)) {
    if let Ok(record) = serde_json::from_str::<Record<'_>>(text)
        && let Ok(event) = record.event()
    {
        sink(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"Records":[
        {"eventTime":"2026-11-24T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject",
         "eventID":"e1","errorCode":"AccessDenied",
         "errorMessage":"User: x is not authorized to perform: s3:GetObject on resource",
         "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/app/fn",
           "sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/app"}}}},
        {"eventTime":"not a time"},
        42
    ]}"#;

    #[test]
    fn a_gzip_or_plain_file_gives_its_usable_events_and_skips_the_rest() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, LOG.as_bytes()).expect("gzip");
        let gz = gz.finish().expect("gzip");
        for bytes in [LOG.as_bytes(), &gz[..]] {
            let mut seen = Vec::new();
            for_each_event(bytes, |e| {
                seen.push((
                    e.principal.as_deref().map(str::to_owned),
                    e.error_code.as_deref().map(str::to_owned),
                ))
            })
            .expect("a log");
            assert_eq!(
                seen,
                [(
                    Some("arn:aws:iam::1:role/app".to_owned()),
                    Some("AccessDenied".to_owned())
                )]
            );
        }
        assert!(for_each_event(b"\x1f\x8bnot gzip", |_| {}).is_err());
        assert!(for_each_event(b"hello", |_| {}).is_err());
    }
}

/// One LookupEvents page, in its turn: the request waits for the next of the account and
/// region's shared slots ([`crate::guard::LookupPace`]), so mining and trial watches together
/// stay within AWS's 2 requests per second.
pub async fn lookup_page<P: crate::ports::Ports>(
    engine: &crate::Engine<P>,
    account: &str,
    region: &str,
    start_ms: i64,
    end_ms: i64,
    token: Option<String>,
) -> crate::ports::AwsResult<crate::ports::LookupPage> {
    let wait = engine.pace.reserve(account, region, engine.now());
    if !wait.is_zero() {
        engine.ports.sleep(wait).await;
    }
    engine
        .ports
        .lookup_events(account, region, start_ms, end_ms, token)
        .await
}
