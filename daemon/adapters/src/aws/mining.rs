//! The AWS calls mining makes: S3 listing and reads, CloudTrail LookupEvents, Athena, and
//! IAM last-accessed data. Each returns whittle's own types; SDK types stay here.
//!
//! The polls here (Athena's query status, IAM's last-accessed job) wait with tokio's timer:
//! they pace calls to AWS, they are not workflow time the engine's clock governs.

use std::time::Duration;

use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use aws_sdk_iam::types::{AccessAdvisorUsageGranularityType, JobStatusType};
use whittle_engine::ports::{
    AthenaQuery, AthenaResult, AwsError, AwsErrorKind, AwsResult, LookupPage,
};
use whittle_planner::usage::ServiceLastAccessed;

use super::Aws;
use super::errors::{describe, failed, kind, other};

impl Aws {
    fn s3(&self, account: &str) -> AwsResult<aws_sdk_s3::Client> {
        let sdk = self.sdk(account)?;
        // Emulators and S3-compatible endpoints serve buckets by path, not by host name.
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(self.endpoint.is_some())
            .build();
        Ok(aws_sdk_s3::Client::from_conf(config))
    }

    /// The key of every object under `prefix` in `bucket`.
    pub async fn list_objects(
        &self,
        account: &str,
        bucket: &str,
        prefix: &str,
    ) -> AwsResult<Vec<String>> {
        Ok(self.list(account, bucket, prefix, None).await?.0)
    }

    /// The folders directly under `prefix` in `bucket` (S3's common prefixes for the
    /// delimiter `/`), each ending with `/`.
    pub async fn list_folders(
        &self,
        account: &str,
        bucket: &str,
        prefix: &str,
    ) -> AwsResult<Vec<String>> {
        Ok(self.list(account, bucket, prefix, Some("/")).await?.1)
    }

    /// Every page of a listing: the object keys and the common prefixes.
    async fn list(
        &self,
        account: &str,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> AwsResult<(Vec<String>, Vec<String>)> {
        let s3 = self.s3(account)?;
        let (mut keys, mut folders) = (Vec::new(), Vec::new());
        let mut pages = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                failed(
                    &e,
                    &format!("s3:ListBucket s3://{bucket}/{prefix}"),
                    self.endpoint(),
                )
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
        }
        Ok((keys, folders))
    }

    /// The bytes of one object.
    /// Streams one object into `dest`, a chunk at a time (the SDK's body is read as it
    /// arrives; nothing holds the whole object).
    pub async fn download_object(
        &self,
        account: &str,
        bucket: &str,
        key: &str,
        dest: &std::path::Path,
    ) -> AwsResult<u64> {
        use tokio::io::AsyncWriteExt as _;
        let s3 = self.s3(account)?;
        let mut out = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("s3:GetObject s3://{bucket}/{key}"),
                    self.endpoint(),
                )
            })?;
        let local = |e: std::io::Error| other(format!("{}: {e}", dest.display()));
        let mut file = tokio::fs::File::create(dest).await.map_err(local)?;
        let mut size = 0u64;
        while let Some(chunk) = out.body.next().await {
            let chunk = chunk.map_err(|e| other(format!("reading s3://{bucket}/{key}: {e}")))?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        Ok(size)
    }

    /// One LookupEvents page between two times (ms), in `region`.
    pub async fn lookup_events(
        &self,
        account: &str,
        region: &str,
        start_ms: i64,
        end_ms: i64,
        next_token: Option<String>,
    ) -> AwsResult<LookupPage> {
        let sdk = self.sdk(account)?;
        let config = aws_sdk_cloudtrail::config::Builder::from(sdk)
            .region(aws_config::Region::new(region.to_owned()))
            .build();
        let client = aws_sdk_cloudtrail::Client::from_conf(config);
        use aws_sdk_cloudtrail::primitives::DateTime;
        let result = client
            .lookup_events()
            .start_time(DateTime::from_millis(start_ms))
            .end_time(DateTime::from_millis(end_ms))
            .max_results(50)
            .set_next_token(next_token)
            .send()
            .await;
        match result {
            Ok(out) => Ok(LookupPage {
                events: out
                    .events()
                    .iter()
                    .filter_map(|e| e.cloud_trail_event().map(str::to_owned))
                    .collect(),
                next_token: out.next_token().map(str::to_owned),
            }),
            // A throttled page is retried by the engine, which names the call itself.
            Err(e) if kind(&e) == AwsErrorKind::Throttled => Err(AwsError::new(
                AwsErrorKind::Throttled,
                describe(&e, self.endpoint()),
            )),
            Err(e) => Err(failed(
                &e,
                &format!("cloudtrail:LookupEvents in {region}"),
                self.endpoint(),
            )),
        }
    }

    /// Runs one Athena query to completion and returns its rows (header row removed), each
    /// a list of nullable strings, and the bytes it scanned. `cancelled` is polled between
    /// status checks.
    pub async fn athena_query(
        &self,
        account: &str,
        query: &AthenaQuery,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> AwsResult<AthenaResult> {
        let athena = aws_sdk_athena::Client::new(self.sdk(account)?);
        let endpoint = self.endpoint();
        let mut start = athena
            .start_query_execution()
            .query_string(&query.sql)
            .query_execution_context(
                QueryExecutionContext::builder()
                    .database(&query.database)
                    .build(),
            )
            .result_configuration(
                ResultConfiguration::builder()
                    .output_location(&query.output_location)
                    .build(),
            );
        if let Some(workgroup) = &query.workgroup {
            start = start.work_group(workgroup);
        }
        let started = start
            .send()
            .await
            .map_err(|e| failed(&e, "athena:StartQueryExecution", endpoint))?;
        let id = started
            .query_execution_id()
            .ok_or_else(|| other("athena:StartQueryExecution returned no query id"))?
            .to_owned();
        // Poll with a growing pause: a small query ends in seconds, an organization-wide one
        // in minutes.
        let mut pause = Duration::from_millis(200);
        let bytes_scanned = loop {
            let out = athena
                .get_query_execution()
                .query_execution_id(&id)
                .send()
                .await
                .map_err(|e| failed(&e, &format!("athena:GetQueryExecution {id}"), endpoint))?;
            let status = out.query_execution().and_then(|q| q.status());
            match status.and_then(|s| s.state()) {
                // GetQueryExecution's `Statistics.DataScannedInBytes` is "the number of bytes
                // in the data that was queried" (Athena API reference, QueryExecutionStatistics):
                // what a query is billed for.
                Some(QueryExecutionState::Succeeded) => {
                    break out
                        .query_execution()
                        .and_then(|q| q.statistics())
                        .and_then(|s| s.data_scanned_in_bytes())
                        .map_or(0, |b| u64::try_from(b).unwrap_or(0));
                }
                Some(state @ (QueryExecutionState::Failed | QueryExecutionState::Cancelled)) => {
                    return Err(other(format!(
                        "Athena query {id} {}: {}",
                        state.as_str().to_lowercase(),
                        status
                            .and_then(|s| s.state_change_reason())
                            .unwrap_or("no reason given")
                    )));
                }
                _ => {}
            }
            if cancelled() {
                let _ = athena
                    .stop_query_execution()
                    .query_execution_id(&id)
                    .send()
                    .await;
                return Err(other(format!(
                    "stopped: Athena query {id} cancelled on shutdown"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        let mut rows = Vec::new();
        let mut pages = athena
            .get_query_results()
            .query_execution_id(&id)
            .into_paginator()
            .send();
        let mut first = true;
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| failed(&e, &format!("athena:GetQueryResults {id}"), endpoint))?;
            for row in page.result_set().map(|s| s.rows()).unwrap_or_default() {
                let values: Vec<Option<String>> = row
                    .data()
                    .iter()
                    .map(|d| d.var_char_value().map(str::to_owned))
                    .collect();
                // The first row of a SELECT's results repeats the column names.
                let is_header = first
                    && values.len() == query.columns.len()
                    && values.iter().zip(&query.columns).all(|(v, name)| {
                        v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(name))
                    });
                first = false;
                if !is_header {
                    rows.push(values);
                }
            }
        }
        Ok(AthenaResult {
            rows,
            bytes_scanned,
        })
    }

    /// IAM's last-accessed data for one role, at action level where AWS tracks it.
    pub async fn last_accessed(
        &self,
        account: &str,
        role_arn: &str,
    ) -> AwsResult<Vec<ServiceLastAccessed>> {
        let iam = aws_sdk_iam::Client::new(self.sdk(account)?);
        let endpoint = self.endpoint();
        let job = iam
            .generate_service_last_accessed_details()
            .arn(role_arn)
            .granularity(AccessAdvisorUsageGranularityType::ActionLevel)
            .send()
            .await
            .map_err(|e| {
                failed(
                    &e,
                    &format!("iam:GenerateServiceLastAccessedDetails {role_arn}"),
                    endpoint,
                )
            })?;
        let job_id = job.job_id().unwrap_or_default().to_owned();
        let mut pause = Duration::from_millis(200);
        for _ in 0..40 {
            let mut services = Vec::new();
            let mut marker = None;
            loop {
                let out = iam
                    .get_service_last_accessed_details()
                    .job_id(&job_id)
                    .set_marker(marker.take())
                    .send()
                    .await
                    .map_err(|e| {
                        failed(
                            &e,
                            &format!("iam:GetServiceLastAccessedDetails {role_arn}"),
                            endpoint,
                        )
                    })?;
                match out.job_status() {
                    JobStatusType::Completed => {}
                    JobStatusType::Failed => {
                        return Err(other(format!(
                            "IAM could not produce last-accessed data for {role_arn}: {}",
                            out.error()
                                .map(|e| e.message())
                                .unwrap_or("no reason given")
                        )));
                    }
                    _ => break,
                }
                for s in out.services_last_accessed() {
                    services.push(ServiceLastAccessed {
                        namespace: s.service_namespace().to_owned(),
                        last_authenticated_ms: s
                            .last_authenticated()
                            .and_then(|t| t.to_millis().ok()),
                        actions: s
                            .tracked_actions_last_accessed()
                            .iter()
                            .filter_map(|a| {
                                let name = a.action_name()?;
                                let at = a.last_accessed_time()?.to_millis().ok()?;
                                Some((format!("{}:{name}", s.service_namespace()), at))
                            })
                            .collect(),
                    });
                }
                if out.is_truncated() {
                    marker = out.marker().map(str::to_owned);
                } else {
                    return Ok(services);
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(3));
        }
        Err(other(format!(
            "IAM's last-accessed job for {role_arn} did not complete in time"
        )))
    }
}
