//! A seeded generator of realistic CloudTrail log files, for the mining benchmark and tests.
//!
//! The files have CloudTrail's layout (`AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/
//! ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_UNIQUE.json.gz`, gzip at zlib's default level)
//! and records shaped like real ones — full `userIdentity` with `sessionContext`,
//! `tlsDetails`, user agents, request parameters and `resources[]` per service — about
//! 1.3 KB each, as in real trails. The mix: hundreds of roles (each a Lambda function or
//! service role with its own set of operations), dozens of services, S3 and DynamoDB data
//! events, about 1% denials, and a few IAM users and AWS service events. The same seed
//! gives the same corpus.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

/// splitmix64: small, fast, and the same on every platform and crate version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            let _ = write!(s, "{:016x}", self.next_u64());
        }
        s.truncate(len);
        s
    }
    fn alnum(&mut self, len: usize) -> String {
        const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| SET[self.below(SET.len())] as char)
            .collect()
    }
}

/// (eventSource host, eventName, read-only, data event)
const OPERATIONS: &[(&str, &str, bool, bool)] = &[
    ("s3", "GetObject", true, true),
    ("s3", "PutObject", false, true),
    ("s3", "HeadObject", true, true),
    ("s3", "ListObjectsV2", true, true),
    ("s3", "DeleteObject", false, true),
    ("s3", "GetBucketLocation", true, false),
    ("dynamodb", "GetItem", true, true),
    ("dynamodb", "PutItem", false, true),
    ("dynamodb", "Query", true, true),
    ("dynamodb", "UpdateItem", false, true),
    ("dynamodb", "DescribeTable", true, false),
    ("kms", "Decrypt", true, false),
    ("kms", "GenerateDataKey", true, false),
    ("kms", "ReEncrypt", false, false),
    ("secretsmanager", "GetSecretValue", true, false),
    ("secretsmanager", "DescribeSecret", true, false),
    ("ssm", "GetParameter", true, false),
    ("ssm", "GetParameters", true, false),
    ("ssm", "GetParametersByPath", true, false),
    ("sqs", "SendMessage", false, false),
    ("sqs", "ReceiveMessage", true, false),
    ("sqs", "DeleteMessage", false, false),
    ("sqs", "GetQueueAttributes", true, false),
    ("sns", "Publish", false, false),
    ("logs", "CreateLogStream", false, false),
    ("logs", "PutLogEvents", false, false),
    ("monitoring", "PutMetricData", false, false),
    ("monitoring", "GetMetricData", true, false),
    ("lambda", "Invoke", false, true),
    ("lambda", "GetFunction20150331v2", true, false),
    ("lambda", "ListFunctions20150331", true, false),
    ("sts", "AssumeRole", true, false),
    ("sts", "GetCallerIdentity", true, false),
    ("events", "PutEvents", false, false),
    ("states", "StartExecution", false, false),
    ("kinesis", "PutRecord", false, false),
    ("firehose", "PutRecordBatch", false, false),
    ("ecr", "GetAuthorizationToken", true, false),
    ("ecr", "BatchGetImage", true, false),
    ("ec2", "DescribeInstances", true, false),
    ("ec2", "DescribeSecurityGroups", true, false),
    ("iam", "GetRole", true, false),
    ("iam", "PassRole", false, false),
    ("xray", "PutTraceSegments", false, false),
    ("athena", "StartQueryExecution", false, false),
    ("glue", "GetTable", true, false),
    ("cloudformation", "DescribeStacks", true, false),
    ("elasticloadbalancing", "DescribeTargetHealth", true, false),
    ("autoscaling", "DescribeAutoScalingGroups", true, false),
    ("route53", "ListHostedZones", true, false),
    ("ses", "SendEmail", false, false),
    ("cognito-idp", "AdminGetUser", true, false),
    ("apigateway", "GetRestApis", true, false),
    ("ecs", "DescribeServices", true, false),
    ("rds", "DescribeDBInstances", true, false),
    ("elasticache", "DescribeCacheClusters", true, false),
    ("acm", "DescribeCertificate", true, false),
    ("cloudtrail", "LookupEvents", true, false),
    ("config", "PutEvaluations", false, false),
    ("tagging", "GetResources", true, false),
];

const USER_AGENTS: &[&str] = &[
    "aws-sdk-java/2.20.162 Linux/5.10.226-214.880.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.12+7-LTS Java/17.0.12 vendor/Amazon.com_Inc. exec-env/AWS_Lambda_java17 io/sync http/UrlConnection cfg/retry-mode/legacy",
    "Boto3/1.34.34 md/Botocore#1.34.34 ua/2.0 os/linux#5.10.226-214.880.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.4 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.34",
    "aws-sdk-nodejs/3.583.0 linux/v20.15.1 exec-env/AWS_Lambda_nodejs20.x api/dynamodb#3.583.0 md/nodejs#20.15.1 lang/js",
    "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/sqs#1.34.3",
];

const REGIONS: &[&str] = &["us-east-1", "eu-west-1"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    pub events: u64,
    pub roles: usize,
    pub accounts: usize,
    pub events_per_file: u64,
    pub days: u32,
    pub seed: u64,
    /// The newest event time (ms); events spread over `days` before it.
    pub end_ms: i64,
}

impl CorpusSpec {
    pub fn new(events: u64, end_ms: i64) -> CorpusSpec {
        CorpusSpec {
            events,
            roles: 300,
            accounts: 3,
            events_per_file: 500,
            days: 30,
            seed: 42,
            end_ms,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub root: PathBuf,
    pub files: Vec<PathBuf>,
    pub events: u64,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
}

struct Role {
    account: String,
    name: String,
    ops: Vec<usize>,
    bucket: String,
    table: String,
}

/// Writes the corpus under `root` (which is created).
pub fn generate(root: &Path, spec: &CorpusSpec) -> std::io::Result<Corpus> {
    let mut rng = Rng::new(spec.seed);
    let accounts: Vec<String> = (0..spec.accounts)
        .map(|i| format!("{:012}", 111_122_223_333u64 + i as u64 * 1_000_001))
        .collect();
    let roles: Vec<Role> = (0..spec.roles)
        .map(|i| {
            let n_ops = 3 + rng.below(10);
            Role {
                account: accounts[i % accounts.len()].clone(),
                name: format!(
                    "app-{}-{i:03}",
                    ["orders", "billing", "search", "ingest", "notify"][i % 5]
                ),
                ops: (0..n_ops).map(|_| rng.below(OPERATIONS.len())).collect(),
                bucket: format!("data-{}-{i:03}", ["raw", "curated", "exports"][i % 3]),
                table: format!("table-{i:03}"),
            }
        })
        .collect();
    let mut corpus = Corpus {
        root: root.to_path_buf(),
        ..Corpus::default()
    };
    let files = spec.events.div_ceil(spec.events_per_file);
    let span_ms = i64::from(spec.days) * 86_400_000;
    let step_ms = span_ms / files.max(1) as i64;
    let mut written = 0u64;
    let mut json = String::new();
    for f in 0..files {
        let file_time = spec.end_ms - span_ms + f as i64 * step_ms;
        let account = &accounts[(f as usize) % accounts.len()];
        let region = REGIONS[(f as usize / accounts.len()) % REGIONS.len()];
        let n = spec.events_per_file.min(spec.events - written);
        json.clear();
        json.push_str("{\"Records\":[");
        for i in 0..n {
            if i > 0 {
                json.push(',');
            }
            let t = file_time + (i as i64 * step_ms.max(1) / n as i64);
            record(&mut json, &mut rng, &roles, account, region, t);
        }
        json.push_str("]}");
        written += n;
        let stamp = ymdhm(file_time);
        let dir = root.join(format!(
            "AWSLogs/{account}/CloudTrail/{region}/{}/{}/{}",
            &stamp[0..4],
            &stamp[4..6],
            &stamp[6..8]
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "{account}_CloudTrail_{region}_{}T{}Z_{}.json.gz",
            &stamp[0..8],
            &stamp[8..12],
            rng.alnum(16)
        ));
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(json.as_bytes())?;
        let bytes = encoder.finish()?;
        std::fs::write(&path, &bytes)?;
        corpus.compressed_bytes += bytes.len() as u64;
        corpus.uncompressed_bytes += json.len() as u64;
        corpus.files.push(path);
    }
    corpus.events = written;
    Ok(corpus)
}

/// `YYYYMMDDHHMM` of a time in ms.
fn ymdhm(ms: i64) -> String {
    let iso = iso_time(ms);
    format!(
        "{}{}{}{}{}",
        &iso[0..4],
        &iso[5..7],
        &iso[8..10],
        &iso[11..13],
        &iso[14..16]
    )
}

fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn record(out: &mut String, rng: &mut Rng, roles: &[Role], account: &str, region: &str, t: i64) {
    let time = iso_time(t);
    let roll = rng.below(1000);
    // 1% AWS service events, 2% IAM users, the rest role sessions.
    if roll < 10 {
        let _ = write!(
            out,
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AWSService","invokedBy":"lambda.amazonaws.com"}},"eventTime":"{time}","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"{region}","sourceIPAddress":"lambda.amazonaws.com","userAgent":"lambda.amazonaws.com","requestParameters":{{"roleArn":"arn:aws:iam::{account}:role/{}","roleSessionName":"fn"}},"responseElements":null,"requestID":"{}","eventID":"{}","readOnly":true,"resources":[{{"accountId":"{account}","type":"AWS::IAM::Role","ARN":"arn:aws:iam::{account}:role/{}"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","sharedEventID":"{}","eventCategory":"Management"}}"#,
            roles[rng.below(roles.len())].name,
            uuid(rng),
            uuid(rng),
            roles[rng.below(roles.len())].name,
            uuid(rng),
        );
        return;
    }
    let role = &roles[rng.below(roles.len())];
    let op = OPERATIONS[role.ops[rng.below(role.ops.len())]];
    let (host, name, read_only, data) = op;
    let agent = USER_AGENTS[rng.below(USER_AGENTS.len())];
    let denied = rng.chance(1);
    let identity = if roll < 30 {
        format!(
            r#"{{"type":"IAMUser","principalId":"AIDA{}","arn":"arn:aws:iam::{account}:user/ci-deploy","accountId":"{account}","accessKeyId":"AKIA{}","userName":"ci-deploy"}}"#,
            rng.alnum(17),
            rng.alnum(16)
        )
    } else {
        let principal = format!("AROA{}", rng.alnum(17));
        format!(
            r#"{{"type":"AssumedRole","principalId":"{principal}:{session}","arn":"arn:aws:sts::{acct}:assumed-role/{name}/{session}","accountId":"{acct}","accessKeyId":"ASIA{key}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"{principal}","arn":"arn:aws:iam::{acct}:role/service-role/{name}","accountId":"{acct}","userName":"{name}"}},"webIdFederationData":{{}},"attributes":{{"creationDate":"{time}","mfaAuthenticated":"false"}}}}}}"#,
            session = role.name,
            acct = role.account,
            name = role.name,
            key = rng.alnum(16),
        )
    };
    let params = match host {
        "s3" => format!(
            r#"{{"bucketName":"{}","Host":"{}.s3.{region}.amazonaws.com","key":"year=2026/part-{:05}.parquet","x-id":"{name}"}}"#,
            role.bucket,
            role.bucket,
            rng.below(100)
        ),
        "dynamodb" => format!(
            r#"{{"tableName":"{}","key":{{"pk":{{"S":"order#{}"}}}},"consistentRead":false}}"#,
            role.table,
            rng.below(100_000)
        ),
        "kms" => format!(
            r#"{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","keyId":"arn:aws:kms:{region}:{account}:key/{}","encryptionContext":{{"aws:lambda:FunctionArn":"arn:aws:lambda:{region}:{account}:function:{}"}}}}"#,
            uuid(rng),
            role.name
        ),
        "secretsmanager" => format!(r#"{{"secretId":"{}/api-key"}}"#, role.name),
        "ssm" => format!(
            r#"{{"name":"/{}/config","withDecryption":true}}"#,
            role.name
        ),
        "sqs" => format!(
            r#"{{"queueUrl":"https://sqs.{region}.amazonaws.com/{account}/{}-queue","maxNumberOfMessages":10}}"#,
            role.name
        ),
        "lambda" => format!(r#"{{"functionName":"{}-worker"}}"#, role.name),
        "logs" => format!(
            r#"{{"logGroupName":"/aws/lambda/{}","logStreamName":"2026/11/24/[$LATEST]{}"}}"#,
            role.name,
            rng.hex(32)
        ),
        _ => "null".to_owned(),
    };
    let resources = if data && host == "s3" {
        format!(
            r#","resources":[{{"type":"AWS::S3::Object","ARNPrefix":"arn:aws:s3:::{}/year=2026/"}},{{"accountId":"{account}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{}"}}]"#,
            role.bucket, role.bucket
        )
    } else if data && host == "dynamodb" {
        format!(
            r#","resources":[{{"accountId":"{account}","type":"AWS::DynamoDB::Table","ARN":"arn:aws:dynamodb:{region}:{account}:table/{}"}}]"#,
            role.table
        )
    } else {
        String::new()
    };
    let (error, response) = if denied {
        (
            format!(
                r#","errorCode":"AccessDenied","errorMessage":"User: arn:aws:sts::{account}:assumed-role/{}/{} is not authorized to perform: {}:{} on resource: arn:aws:{host}:{region}:{account}:* because no identity-based policy allows the {}:{} action""#,
                role.name,
                role.name,
                iam_prefix(host),
                strip(name),
                iam_prefix(host),
                strip(name)
            ),
            "null".to_owned(),
        )
    } else {
        (String::new(), "null".to_owned())
    };
    let _ = write!(
        out,
        r#"{{"eventVersion":"1.09","userIdentity":{identity},"eventTime":"{time}","eventSource":"{host}.amazonaws.com","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{}.{}.{}.{}","userAgent":"{agent}"{error},"requestParameters":{params},"responseElements":{response},"additionalEventData":{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":0,"AuthenticationMethod":"AuthHeader","x-amz-id-2":"{}","bytesTransferredOut":{}}},"requestID":"{}","eventID":"{}","readOnly":{read_only}{resources},"eventType":"AwsApiCall","managementEvent":{},"recipientAccountId":"{account}","eventCategory":"{}","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{host}.{region}.amazonaws.com"}}}}"#,
        3 + rng.below(250),
        rng.below(256),
        rng.below(256),
        rng.below(256),
        rng.hex(56),
        rng.below(100_000),
        rng.alnum(16),
        uuid(rng),
        !data,
        if data { "Data" } else { "Management" },
    );
}

fn iam_prefix(host: &str) -> &str {
    match host {
        "monitoring" => "cloudwatch",
        "tagging" => "tag",
        other => other,
    }
}

fn strip(name: &str) -> &str {
    name.trim_end_matches("20150331v2")
        .trim_end_matches("20150331")
}

fn uuid(rng: &mut Rng) -> String {
    let h = rng.hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_corpus_in_the_cloudtrail_layout() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let spec = CorpusSpec {
            events: 1200,
            ..CorpusSpec::new(1200, 1_795_515_330_000)
        };
        let one = generate(a.path(), &spec).expect("generate");
        let two = generate(b.path(), &spec).expect("generate");
        assert_eq!(one.events, 1200);
        assert_eq!(one.files.len(), 3);
        assert_eq!(one.uncompressed_bytes, two.uncompressed_bytes);
        let rel = one.files[0]
            .strip_prefix(a.path())
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        assert!(
            rel.starts_with("AWSLogs/111122223333/CloudTrail/us-east-1/2026/10/"),
            "{rel}"
        );
        assert!(rel.ends_with(".json.gz"));
        // Records are about the size of real ones.
        let per_record = one.uncompressed_bytes / one.events;
        assert!(
            (900..2000).contains(&per_record),
            "{per_record} bytes per record"
        );
        let text = {
            let mut d =
                flate2::read::GzDecoder::new(std::fs::File::open(&one.files[0]).expect("open"));
            let mut s = String::new();
            std::io::Read::read_to_string(&mut d, &mut s).expect("gunzip");
            s
        };
        let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(doc["Records"].as_array().map(Vec::len), Some(500));
    }
}
