//! One-line descriptions of SDK errors that tell the reader what to check.

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

/// Describes an SDK error in one line: the service's code and message, or what failed on the
/// way (no connection, timeout, no credentials) with what to do about it.
///
/// Every SDK crate's raw response is the same smithy `HttpResponse`, so one signature serves
/// all services.
pub fn describe<E>(error: &SdkError<E, HttpResponse>, endpoint: Option<&str>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let chain = causes(error);
    let target = endpoint.unwrap_or("AWS");
    match error {
        SdkError::DispatchFailure(_) if chain.contains("credentials") => format!(
            "no usable AWS credentials ({chain}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or [aws] profile"
        ),
        SdkError::DispatchFailure(_) => {
            format!(
                "cannot reach {target} ({chain}); check [aws] endpoint_url / --endpoint-url and the network"
            )
        }
        SdkError::TimeoutError(_) => {
            format!(
                "timed out talking to {target}; raise [aws] operation_timeout or check the network"
            )
        }
        SdkError::ServiceError(service) => match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            // Some endpoints answer a denial with a body the SDK cannot parse; a 403 is
            // still a denial and must read like one.
            (None, _) if service.raw().status().as_u16() == 403 => {
                "access denied (HTTP 403)".to_owned()
            }
            (None, _) => format!("HTTP {} from {target}: {chain}", service.raw().status()),
        },
        _ => chain,
    }
}

/// The error and its sources as one line of their messages, `outer: inner: …`.
///
/// The SDK's own `DisplayErrorContext` ends with the whole error's `Debug` form (connector
/// internals, raw responses), which buries the cause; the messages alone name it. A source
/// whose message its parent already contains (many wrap with `{source}`) is said once.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let message = current.to_string().replace('\n', " ");
        if !message.is_empty() && !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        next = current.source();
    }
    parts.join(": ")
}

/// The outcome of a delete or detach: done, or already done (`NoSuchEntity`, as when a
/// journaled step is retried after a crash); any other error is described with `what`.
pub fn done_if_gone<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    what: &str,
    endpoint: Option<&str>,
) -> anyhow::Result<()>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{what} failed: {}", describe(&e, endpoint))),
    }
}
