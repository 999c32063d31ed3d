#!/usr/bin/env bash
# Peak memory of `whittle mine` on one large S3 trail object, from the emulator: a plain JSON
# log of SIZE_MB (default 300) whose middle record is that big, between two small records.
# Usage: tests/benches/s3-memory.sh [SIZE_MB]   (after tests/run.sh or `cargo build -p whittle`;
# BIN=path picks another whittle binary). Needs GNU time (/usr/bin/time). Works in a scratch
# directory under /tmp.
set -euo pipefail
SIZE_MB=${1:-300}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
cd "$WORK"
PY=$ROOT/.venv-moto/bin/python
WHITTLE_EMULATOR_DETACHED=1 $PY $ROOT/tests/emulator/whittle_emulator.py --port 0 > emu.log 2>&1 < /dev/null &
EMU=$!
trap 'kill $EMU; rm -rf "$WORK"' EXIT
for i in $(seq 50); do grep -q 'Running on' emu.log && break; sleep 0.2; done
PORT=$(grep -o 'Running on http://127.0.0.1:[0-9]*' emu.log | head -1 | sed 's/.*://')
URL=http://127.0.0.1:$PORT
$PY - "$URL" "$SIZE_MB" <<'PY'
import sys, boto3, json
url, size = sys.argv[1], int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket="trail")
rec = {"eventVersion":"1.08","eventTime":"2026-12-01T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","eventID":"e1","userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::123456789012:role/app"}}}}
small = json.dumps(rec).encode()
pad = b'{"eventName":"Huge","pad":"' + b"A" * (size * 1024 * 1024) + b'"}'
body = b'{"Records":[' + small + b"," + pad + b"," + small.replace(b'"e1"', b'"e2"') + b"]}"
s3.put_object(Bucket="trail", Key="AWSLogs/123456789012/CloudTrail/us-east-1/2026/12/01/123456789012_CloudTrail_us-east-1_20261201T1000Z_big.json", Body=body)
print("object bytes", len(body))
PY
mkdir -p state
cat > c.toml <<TOML
[aws]
region = "us-east-1"
endpoint_url = "$URL"
max_attempts = 1
[[aws.accounts]]
name = "staging"
id = "123456789012"
[state]
dir = "$PWD/state"
[targets]
arn_patterns = ["arn:aws:iam::*:role/app"]
[mining]
last_accessed = false
[[mining.sources]]
name = "trail"
kind = "s3"
account = "staging"
bucket = "trail"
TOML
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing /usr/bin/time -v ${BIN:-$ROOT/target/debug/whittle} --config c.toml mine --no-progress 2> time.log | tail -3
grep -E 'Maximum resident|Elapsed' time.log
grep -i 'skip\|too large' time.log | head -3
