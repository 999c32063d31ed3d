//! The emulator extension, proved through the Rust SDK as whittle will use it.

use std::io::Read;

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

use crate::support::{Emulator, admin_user, create_role};

fn lookup(key: LookupAttributeKey, value: &str) -> LookupAttribute {
    LookupAttribute::builder()
        .attribute_key(key)
        .attribute_value(value)
        .build()
        .expect("attribute")
}

/// The headline scenario: a workload's assumed-role call denied in auth mode is seen as
/// AccessDenied for that role, in LookupEvents and in a delivered trail log file.
#[tokio::test(flavor = "multi_thread")]
async fn denied_assumed_role_call_is_recorded_for_the_role() {
    let emulator = Emulator::start(&[]);
    let root = emulator.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&root);
    let (admin_id, admin_secret) = admin_user(&iam).await;
    create_role(&iam, "orders-fn", &[]).await;
    let only_identity = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}"#;
    iam.put_role_policy()
        .role_name("orders-fn")
        .policy_name("p")
        .policy_document(only_identity)
        .send()
        .await
        .expect("policy");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&root)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("trail")
        .send()
        .await
        .expect("bucket");
    let cloudtrail = aws_sdk_cloudtrail::Client::new(&root);
    cloudtrail
        .create_trail()
        .name("main")
        .s3_bucket_name("trail")
        .send()
        .await
        .expect("trail");
    cloudtrail
        .start_logging()
        .name("main")
        .send()
        .await
        .expect("start logging");

    emulator.enable_auth();
    let admin = emulator
        .sdk_config_with(&admin_id, &admin_secret, None)
        .await;
    let workload = emulator
        .assume_role(
            &admin,
            "arn:aws:iam::123456789012:role/orders-fn",
            "orders-fn-session",
        )
        .await;

    // Allowed for the role, then denied; the SDK reads the denial's code (reshaped error body).
    aws_sdk_sts::Client::new(&workload)
        .get_caller_identity()
        .send()
        .await
        .expect("allowed call");
    let denied = aws_sdk_secretsmanager::Client::new(&workload)
        .list_secrets()
        .send()
        .await
        .expect_err("must be denied");
    assert_eq!(denied.code(), Some("AccessDeniedException"), "{denied:?}");

    let events = aws_sdk_cloudtrail::Client::new(&admin)
        .lookup_events()
        .lookup_attributes(lookup(LookupAttributeKey::EventName, "ListSecrets"))
        .send()
        .await
        .expect("lookup");
    let event = &events.events()[0];
    assert_eq!(event.username(), Some("orders-fn-session"));
    let record: serde_json::Value =
        serde_json::from_str(event.cloud_trail_event().expect("record")).expect("JSON");
    assert_eq!(record["errorCode"], "AccessDenied");
    assert_eq!(record["userIdentity"]["type"], "AssumedRole");
    assert_eq!(
        record["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"],
        "arn:aws:iam::123456789012:role/orders-fn"
    );
    assert!(
        record["errorMessage"]
            .as_str()
            .expect("message")
            .contains("secretsmanager:ListSecrets"),
        "{record}"
    );

    // The same denial in a log file delivered to the trail's bucket, in the real layout.
    let delivered = emulator.post_json("/whittle-emulator/deliver", &serde_json::json!({}));
    let key = delivered["delivered"][0]
        .as_str()
        .expect("a delivered file")
        .trim_start_matches("s3://trail/")
        .to_owned();
    assert!(
        key.starts_with("AWSLogs/123456789012/CloudTrail/us-east-1/"),
        "{key}"
    );
    assert!(key.ends_with(".json.gz"));
    let s3_admin = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&admin)
            .force_path_style(true)
            .build(),
    );
    let object = s3_admin
        .get_object()
        .bucket("trail")
        .key(&key)
        .send()
        .await
        .expect("get log file");
    let gz = object.body.collect().await.expect("body").into_bytes();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut json)
        .expect("gunzip");
    let file: serde_json::Value = serde_json::from_str(&json).expect("log JSON");
    assert!(
        file["Records"]
            .as_array()
            .expect("Records")
            .iter()
            .any(|r| r["eventName"] == "ListSecrets"
                && r["errorCode"] == "AccessDenied"
                && r["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"]
                    == "arn:aws:iam::123456789012:role/orders-fn"),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lookup_events_filters_pages_and_sees_injected_events() {
    let emulator = Emulator::start(&[]);
    let config = emulator.sdk_config().await;
    let injected: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            serde_json::json!({
                "eventSource": "s3.amazonaws.com",
                "eventName": "ListBuckets",
                "awsRegion": "us-east-1",
                "eventTime": format!("2026-01-01T00:{:02}:00Z", i % 60),
                "userIdentity": {"type": "AssumedRole", "accountId": "123456789012",
                    "arn": "arn:aws:sts::123456789012:assumed-role/app/fn"},
            })
        })
        .collect();
    assert_eq!(
        emulator.post_json(
            "/whittle-emulator/events",
            &serde_json::json!({ "Records": injected })
        )["injected"],
        60
    );
    let cloudtrail = aws_sdk_cloudtrail::Client::new(&config);
    let first = cloudtrail
        .lookup_events()
        .lookup_attributes(lookup(LookupAttributeKey::EventSource, "s3.amazonaws.com"))
        .send()
        .await
        .expect("page 1");
    assert_eq!(first.events().len(), 50);
    assert_eq!(first.events()[0].username(), Some("fn"));
    let second = cloudtrail
        .lookup_events()
        .lookup_attributes(lookup(LookupAttributeKey::EventSource, "s3.amazonaws.com"))
        .next_token(first.next_token().expect("token"))
        .send()
        .await
        .expect("page 2");
    assert_eq!(second.events().len(), 10);
    assert!(second.next_token().is_none());

    // A time range.
    let start = aws_sdk_cloudtrail::primitives::DateTime::from_secs(1_767_225_600 + 10 * 60); // 2026-01-01T00:10Z
    let ranged = cloudtrail
        .lookup_events()
        .lookup_attributes(lookup(LookupAttributeKey::EventSource, "s3.amazonaws.com"))
        .start_time(start)
        .end_time(aws_sdk_cloudtrail::primitives::DateTime::from_secs(
            1_767_225_600 + 19 * 60,
        ))
        .send()
        .await
        .expect("range");
    assert_eq!(ranged.events().len(), 10);

    // Throttling as AWS does it, readable by the SDK.
    emulator.post_json(
        "/whittle-emulator/faults",
        &serde_json::json!({"service": "cloudtrail", "action": "LookupEvents", "code": "ThrottlingException", "count": 1}),
    );
    let throttled = cloudtrail
        .lookup_events()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(throttled.code(), Some("ThrottlingException"));
    cloudtrail
        .lookup_events()
        .send()
        .await
        .expect("the fault was for one call only");
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_simulation_and_last_accessed_work() {
    let emulator = Emulator::shared();
    let config = emulator.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    create_role(&iam, "ite-sim", &[]).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:Get*","sts:GetCallerIdentity"],"Resource":"*"},
        {"Effect":"Deny","Action":"s3:GetBucketPolicy","Resource":"*"}]}"#;
    iam.put_role_policy()
        .role_name("ite-sim")
        .policy_name("p")
        .policy_document(policy)
        .send()
        .await
        .expect("policy");
    let arn = "arn:aws:iam::123456789012:role/ite-sim";
    let simulated = iam
        .simulate_principal_policy()
        .policy_source_arn(arn)
        .action_names("s3:GetObject")
        .action_names("s3:PutObject")
        .action_names("s3:GetBucketPolicy")
        .send()
        .await
        .expect("simulate");
    let decisions: Vec<&str> = simulated
        .evaluation_results()
        .iter()
        .map(|r| r.eval_decision().as_str())
        .collect();
    assert_eq!(decisions, ["allowed", "implicitDeny", "explicitDeny"]);

    let custom = iam
        .simulate_custom_policy()
        .policy_input_list(policy)
        .action_names("s3:GetObject")
        .send()
        .await
        .expect("simulate custom");
    assert_eq!(
        custom.evaluation_results()[0].eval_decision().as_str(),
        "allowed"
    );

    // Use the role, then ask when it was last used.
    let as_role = emulator.assume_role(&config, arn, "s").await;
    aws_sdk_sts::Client::new(&as_role)
        .get_caller_identity()
        .send()
        .await
        .expect("identity");
    let job = iam
        .generate_service_last_accessed_details()
        .arn(arn)
        .granularity(aws_sdk_iam::types::AccessAdvisorUsageGranularityType::ActionLevel)
        .send()
        .await
        .expect("generate");
    let details = iam
        .get_service_last_accessed_details()
        .job_id(job.job_id().expect("job id"))
        .send()
        .await
        .expect("details");
    assert_eq!(details.job_status().as_str(), "COMPLETED");
    let services = details.services_last_accessed();
    let sts = services
        .iter()
        .find(|s| s.service_namespace() == "sts")
        .expect("sts listed");
    assert!(sts.last_authenticated().is_some());
    assert_eq!(
        sts.tracked_actions_last_accessed()[0].action_name(),
        Some("GetCallerIdentity")
    );
    let s3 = services
        .iter()
        .find(|s| s.service_namespace() == "s3")
        .expect("s3 listed (allowed, unused)");
    assert!(s3.last_authenticated().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_manager_default_version_follows_awscurrent() {
    let emulator = Emulator::shared();
    let sm = aws_sdk_secretsmanager::Client::new(&emulator.sdk_config().await);
    let v1 = sm
        .create_secret()
        .name("ite/db")
        .secret_string("one")
        .send()
        .await
        .expect("create")
        .version_id
        .expect("v1");
    let v2 = sm
        .put_secret_value()
        .secret_id("ite/db")
        .secret_string("two")
        .version_stages("AWSPENDING")
        .send()
        .await
        .expect("put pending")
        .version_id
        .expect("v2");
    sm.update_secret_version_stage()
        .secret_id("ite/db")
        .version_stage("AWSCURRENT")
        .move_to_version_id(&v2)
        .remove_from_version_id(&v1)
        .send()
        .await
        .expect("promote");
    let current = sm
        .get_secret_value()
        .secret_id("ite/db")
        .send()
        .await
        .expect("get");
    assert_eq!(current.secret_string(), Some("two"));
    sm.put_secret_value()
        .secret_id("ite/db")
        .secret_string("three")
        .send()
        .await
        .expect("plain put");
    let described = sm
        .describe_secret()
        .secret_id("ite/db")
        .send()
        .await
        .expect("describe");
    let stages = described.version_ids_to_stages().expect("stages");
    assert_eq!(
        stages
            .values()
            .filter(|s| s.iter().any(|x| x == "AWSCURRENT"))
            .count(),
        1,
        "{stages:?}"
    );
    assert!(stages[&v2].iter().any(|s| s == "AWSPREVIOUS"), "{stages:?}");
}
