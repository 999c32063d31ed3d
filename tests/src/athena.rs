//! The Athena setup the Athena integration test and the Athena bench share: trail files
//! uploaded to the emulator's S3 as CloudTrail delivers them, and AWS's CloudTrail table
//! created over them through StartQueryExecution, as a user runs the DDL of docs/athena.md.

use std::path::{Path, PathBuf};

/// Puts every file of `files` (under `root`) into `bucket` at its path relative to `root`,
/// 8 at a time; returns the bytes uploaded.
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    root: &Path,
    files: &[PathBuf],
) -> Result<u64, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in files.chunks(files.len().div_ceil(8).max(1)) {
        let (s3, bucket, root, chunk) = (
            s3.clone(),
            bucket.to_owned(),
            root.to_path_buf(),
            chunk.to_vec(),
        );
        tasks.spawn(async move {
            let mut bytes = 0;
            for file in chunk {
                let key = file
                    .strip_prefix(&root)
                    .map_err(|_| format!("{} is not under {}", file.display(), root.display()))?
                    .to_string_lossy()
                    .into_owned();
                let body = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                bytes += body.len() as u64;
                s3.put_object()
                    .bucket(&bucket)
                    .key(key)
                    .body(body.into())
                    .send()
                    .await
                    .map_err(|e| format!("put {}: {e:?}", file.display()))?;
            }
            Ok::<u64, String>(bytes)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.map_err(|e| format!("upload task: {e}"))??;
    }
    Ok(total)
}

/// Creates AWS's CloudTrail table `cloudtrail_logs` (partition projection by account,
/// region and day; tests/emulator/cloudtrail_table.sql) over `bucket`, with the DDL's result
/// under `results`, and waits until the DDL has run.
pub async fn create_cloudtrail_table(
    config: &aws_config::SdkConfig,
    bucket: &str,
    results: &str,
    accounts: &str,
) -> Result<(), String> {
    use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
    let ddl =
        std::fs::read_to_string(crate::repo_root().join("tests/emulator/cloudtrail_table.sql"))
            .map_err(|e| format!("DDL: {e}"))?
            .replace("{table}", "cloudtrail_logs")
            .replace("{bucket}", bucket)
            .replace("{accounts}", accounts)
            .replace("{regions}", "us-east-1,eu-west-1");
    let athena = aws_sdk_athena::Client::new(config);
    let id = athena
        .start_query_execution()
        .query_string(ddl)
        .query_execution_context(QueryExecutionContext::builder().database("default").build())
        .result_configuration(
            ResultConfiguration::builder()
                .output_location(format!("s3://{results}/ddl/"))
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("start the DDL: {e:?}"))?
        .query_execution_id
        .ok_or("the DDL has no query id")?;
    for _ in 0..100 {
        let status = athena
            .get_query_execution()
            .query_execution_id(&id)
            .send()
            .await
            .map_err(|e| format!("DDL state: {e:?}"))?
            .query_execution
            .and_then(|q| q.status);
        match status.as_ref().and_then(|s| s.state()) {
            Some(QueryExecutionState::Succeeded) => return Ok(()),
            Some(QueryExecutionState::Failed | QueryExecutionState::Cancelled) => {
                return Err(format!(
                    "the DDL failed: {}",
                    status
                        .as_ref()
                        .and_then(|s| s.state_change_reason())
                        .unwrap_or_default()
                ));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    Err("the DDL did not finish in 10 s".to_owned())
}
