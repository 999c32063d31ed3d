//! SDK errors as whittle's [`AwsError`]: a kind classified from the SDK's typed error
//! metadata (the service's error code, or an unparsed HTTP 403), and one line that tells the
//! reader what to check.
//!
//! Invariants: the kind never comes from searching message text; the message names the call
//! and never holds a secret value (SDK errors carry codes and the service's message, not
//! request bodies).

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use whittle_engine::ports::{AwsError, AwsErrorKind, AwsResult};

/// Describes an SDK error in one line: the service's code and message, or what failed on the
/// way (no connection, timeout, no credentials) with what to do about it.
///
/// Every SDK crate's raw response is the same smithy `HttpResponse`, so one signature serves
/// all services.
pub fn describe<E>(error: &SdkError<E, HttpResponse>, endpoint: Option<&str>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let chain = crate::causes(error);
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

/// The kind of an SDK error, from its typed metadata: the service's error code, or the HTTP
/// status of a response the SDK could not parse (a bare 403 is a denial). No connection, a
/// timeout or any other code is [`AwsErrorKind::Other`].
pub fn kind<E>(error: &SdkError<E, HttpResponse>) -> AwsErrorKind
where
    E: ProvideErrorMetadata,
{
    match error.code() {
        Some(code) => kind_of_code(code),
        None if error
            .raw_response()
            .is_some_and(|raw| raw.status().as_u16() == 403) =>
        {
            AwsErrorKind::AccessDenied
        }
        None => AwsErrorKind::Other,
    }
}

/// The kind an AWS error code stands for.
fn kind_of_code(code: &str) -> AwsErrorKind {
    match code {
        "NoSuchEntity"
        | "ResourceNotFoundException"
        | "NoSuchKey"
        | "NoSuchBucket"
        | "ParameterNotFound" => AwsErrorKind::NotFound,
        "EntityAlreadyExists" => AwsErrorKind::AlreadyExists,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => AwsErrorKind::Throttled,
        "AccessDenied" | "AccessDeniedException" => AwsErrorKind::AccessDenied,
        // EC2-style denials: `UnauthorizedOperation`, `Client.UnauthorizedOperation`.
        code if code.ends_with("UnauthorizedOperation") => AwsErrorKind::AccessDenied,
        _ => AwsErrorKind::Other,
    }
}

/// An SDK error as an [`AwsError`]: its kind, and `{what} failed: {describe}`.
pub fn failed<E>(error: &SdkError<E, HttpResponse>, what: &str, endpoint: Option<&str>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    AwsError::new(
        kind(error),
        format!("{what} failed: {}", describe(error, endpoint)),
    )
}

/// An error that is not the SDK's (a missing field in an answer, a failed job): `Other`.
pub fn other(message: impl Into<String>) -> AwsError {
    AwsError::new(AwsErrorKind::Other, message)
}

/// The outcome of a delete or detach: done, or already done (the entity is not found, as
/// when a journaled step is retried after a crash); any other error is described with `what`.
pub fn done_if_gone<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    what: &str,
    endpoint: Option<&str>,
) -> AwsResult<()>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if kind(&e) == AwsErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(&e, what, endpoint)),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_iam::error::ErrorMetadata;
    use aws_sdk_iam::operation::get_role::GetRoleError;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    fn service_error(code: Option<&str>, status: u16) -> SdkError<GetRoleError, HttpResponse> {
        let mut meta = ErrorMetadata::builder().message("the service's message");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        SdkError::service_error(GetRoleError::generic(meta.build()), raw)
    }

    #[test]
    fn kinds_come_from_the_error_code() {
        for (code, want) in [
            ("NoSuchEntity", AwsErrorKind::NotFound),
            ("ResourceNotFoundException", AwsErrorKind::NotFound),
            ("NoSuchKey", AwsErrorKind::NotFound),
            ("NoSuchBucket", AwsErrorKind::NotFound),
            ("ParameterNotFound", AwsErrorKind::NotFound),
            ("EntityAlreadyExists", AwsErrorKind::AlreadyExists),
            ("ThrottlingException", AwsErrorKind::Throttled),
            ("Throttling", AwsErrorKind::Throttled),
            ("TooManyRequestsException", AwsErrorKind::Throttled),
            ("RequestLimitExceeded", AwsErrorKind::Throttled),
            ("AccessDenied", AwsErrorKind::AccessDenied),
            ("AccessDeniedException", AwsErrorKind::AccessDenied),
            ("UnauthorizedOperation", AwsErrorKind::AccessDenied),
            ("Client.UnauthorizedOperation", AwsErrorKind::AccessDenied),
            ("MalformedPolicyDocument", AwsErrorKind::Other),
        ] {
            assert_eq!(kind(&service_error(Some(code), 400)), want, "{code}");
        }
    }

    #[test]
    fn an_unparsed_403_is_a_denial_and_reads_like_one() {
        let error = service_error(None, 403);
        assert_eq!(kind(&error), AwsErrorKind::AccessDenied);
        let failed = failed(&error, "iam:GetRole app", None);
        assert_eq!(failed.kind, AwsErrorKind::AccessDenied);
        assert_eq!(
            failed.message,
            "iam:GetRole app failed: access denied (HTTP 403)"
        );
        assert_eq!(kind(&service_error(None, 500)), AwsErrorKind::Other);
    }

    #[test]
    fn message_text_never_decides_the_kind() {
        let meta = ErrorMetadata::builder()
            .code("ValidationError")
            .message("NoSuchEntity ThrottlingException AccessDenied");
        let raw = HttpResponse::new(400.try_into().expect("status"), SdkBody::empty());
        let error: SdkError<GetRoleError, HttpResponse> =
            SdkError::service_error(GetRoleError::generic(meta.build()), raw);
        assert_eq!(kind(&error), AwsErrorKind::Other);
    }

    #[test]
    fn gone_counts_as_done_and_anything_else_is_described() {
        let gone: Result<(), _> = Err(service_error(Some("NoSuchEntity"), 404));
        assert_eq!(done_if_gone(gone, "iam:DeletePolicy p", None), Ok(()));
        let denied: Result<(), _> = Err(service_error(Some("AccessDenied"), 403));
        let error = done_if_gone(denied, "iam:DeletePolicy p", None).expect_err("denied");
        assert_eq!(error.kind, AwsErrorKind::AccessDenied);
        assert_eq!(
            error.message,
            "iam:DeletePolicy p failed: AccessDenied: the service's message"
        );
    }
}
