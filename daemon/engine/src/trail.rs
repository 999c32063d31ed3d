//! CloudTrail records outside mining's hot loop: a whole log file (gzip or plain JSON) or a
//! LookupEvents record, read with the planner's typed reader (`whittle_planner::trail`), the
//! same one mining uses. A record that does not fit is skipped, never a panic.

use std::io::Read as _;

use whittle_planner::trail::{Event, Item, Record, read_log_stream};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Calls `sink` with every usable event of a log file, gzip or plain (`{"Records":[...]}` or
/// a bare array), streamed through the planner's bounded reader: a record over its size limit
/// is skipped, and memory never holds the file. Err when it is not gzip or JSON at all.
pub fn for_each_event(
    mut input: impl std::io::Read,
    mut sink: impl FnMut(&Event<'_>),
) -> anyhow::Result<()> {
    let mut magic = [0u8; 2];
    let mut filled = 0;
    while filled < 2 {
        match input.read(&mut magic[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    let head = std::io::Cursor::new(magic[..filled].to_vec());
    let mut on_item = |item: Item<'_>| {
        if let Item::Record(record) = item
            && let Ok(event) = record.event()
        {
            sink(&event);
        }
    };
    let outcome = if magic[..filled] == GZIP_MAGIC {
        read_log_stream(
            flate2::read::MultiGzDecoder::new(head.chain(input)),
            &mut on_item,
        )
    } else {
        read_log_stream(head.chain(input), &mut on_item)
    };
    match outcome.error {
        Some(error) if outcome.records == 0 => Err(anyhow::anyhow!("{error}")),
        _ => Ok(()),
    }
}

/// The directory downloaded trail objects are streamed into, created (0700) if missing.
pub fn downloads_dir(state_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = state_dir.join("downloads");
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(&dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    Ok(dir)
}

/// Downloads one object into a new file of `dir` that deletes itself when dropped.
pub async fn download<P: crate::ports::TrailStore>(
    ports: &P,
    account: &str,
    bucket: &str,
    key: &str,
    dir: &std::path::Path,
) -> anyhow::Result<tempfile::TempPath> {
    let file = tempfile::Builder::new()
        .prefix("object-")
        .tempfile_in(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .into_temp_path();
    ports.download_object(account, bucket, key, &file).await?;
    Ok(file)
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

/// One LookupEvents page, in its turn: the request waits for the next of the account and
/// region's shared slots ([`crate::guard::Pace`]), so mining and trial watches together
/// stay within AWS's 2 requests per second.
pub async fn lookup_page<P: crate::ports::Ports>(
    engine: &crate::Engine<P>,
    account: &str,
    region: &str,
    start_ms: i64,
    end_ms: i64,
    token: Option<String>,
) -> crate::ports::AwsResult<crate::ports::LookupPage> {
    let wait = engine.pace.reserve(
        crate::guard::Quota::LookupEvents,
        account,
        region,
        engine.now(),
    );
    if !wait.is_zero() {
        engine.ports.sleep(wait).await;
    }
    engine
        .ports
        .lookup_events(account, region, start_ms, end_ms, token)
        .await
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
        assert!(for_each_event(&b"\x1f\x8bnot gzip"[..], |_| {}).is_err());
        assert!(for_each_event(&b"hello"[..], |_| {}).is_err());
    }
}
