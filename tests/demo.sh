#!/usr/bin/env bash
# The quick-start demo: sets up the local AWS emulator, seeds it with a realistic staging
# account, runs `whittle daemon` against it on a fast schedule (discover the roles, mine the
# trail the emulator delivers to S3), shows `whittle status`, then what each role really used
# (`whittle usage`), the least-privilege plan made from it, and that plan applied and rolled
# back (`whittle plan`, `apply --force`, `rollback`). whittle runs as a user holding only the
# policy `whittle self-policy` prints, and the emulator checks every call against IAM (auth
# mode) from the start. Then a trial of the plan in staging: the orders function is denied
# an action it needs only now and then, whittle sees the denial and rolls the role back; the
# next plan keeps that action, passes its trial and is applied without --force. Last, a
# service whose three functions share one role: the usage of each function, the plan's split
# into one role per function (and its serverless.yml), its trial and its apply.
# Needs no AWS account. Run from anywhere; DEMO_SECONDS (default 60) sets how long the daemon runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${DEMO_SECONDS:-60}"
work="$root/demo-state"

"$root/tests/emulator/setup.sh"
echo "==> building whittle" >&2
cargo build --quiet -p whittle
whittle="$root/target/debug/whittle"

rm -rf "$work" && mkdir -p "$work"
echo "==> starting the emulator (moto + whittle's extension)" >&2
# The emulator exits when this script's pipe to it closes, however the script ends.
coproc EMULATOR { WHITTLE_EMULATOR_DELIVERY_SECONDS=5 MOTO_IAM_LOAD_MANAGED_POLICIES=true "$root/.venv-moto/bin/python" "$root/tests/emulator/whittle_emulator.py" --port 0 2>"$work/emulator.log"; }
read -r line <&"${EMULATOR[0]}"
endpoint="${line##* on }"
daemon_pid=""
cleanup() {
  # Stopping what may have stopped already: a failed kill here is not a failed demo.
  set +e
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
  kill "$EMULATOR_PID" 2>/dev/null
  return 0
}
# `whittle plan` exits 2 when it proposes changes, which is what each plan here must do.
expect_changes() {
  local code=0
  "$@" || code=$?
  [ "$code" -eq 2 ] || { echo "demo: whittle ${*:2} exited $code, expected 2 (changes proposed)" >&2; exit 1; }
}
trap cleanup EXIT
echo "    emulator at $endpoint" >&2

echo "==> seeding a staging account" >&2
"$root/.venv-moto/bin/python" "$root/tests/emulator/seed_demo.py" "$endpoint" "$work/operator.env" >&2
# The seeded operator (allowed everything) runs the workload the trial exercises; whittle
# itself runs as a user holding only what `whittle self-policy` prints (below).
operator_key="$(sed -n 's/^export AWS_ACCESS_KEY_ID=//p' "$work/operator.env")"
operator_secret="$(sed -n 's/^export AWS_SECRET_ACCESS_KEY=//p' "$work/operator.env")"

# The demo's configuration: the shipped example, pointed at the emulator, on a fast schedule.
config="$work/config.toml"
sed -e "s|^dir = .*|dir = \"$work/state\"|" \
    -e "s|^# endpoint_url = .*|endpoint_url = \"$endpoint\"|" \
    -e "s|^listen = .*|listen = \"127.0.0.1:0\"|" \
    -e 's|^cron = "0 \*/5 \* \* \* \*"|cron = "*/5 * * * * *"|' \
    -e 's|^cron = "0 0 \* \* \* \*"|cron = "*/10 * * * * *"|' \
    -e 's|^jitter = "2m"|jitter = "2s"|' \
    -e 's|^cron = "0 15 \* \* \* \*"|cron = "*/15 * * * * *"|' \
    -e 's|^jitter = "5m"|jitter = "1s"|' \
    -e 's|^arn_patterns = .*|arn_patterns = ["arn:aws:iam::*:role/app-*", "arn:aws:iam::*:role/aws-service-role/*"]|' \
    -e 's|^min_observation_days = .*|min_observation_days = 0|' \
    -e 's|^cron = "0 0 3 \* \* 1"|cron = "*/10 * * * * *"|' \
    -e 's|^cron = "0 30 3 \* \* 1"|cron = "5-59/10 * * * * *"|' \
    -e 's|^jitter = "10m"|jitter = "1s"|' \
    -e "s|^playbook = \"playbooks/|playbook = \"$root/playbooks/|" \
    "$root/config.toml" > "$config"
export AWS_REGION=us-east-1

echo "==> whittle validate" >&2
"$whittle" validate --config "$config"

echo "==> whittle self-policy: the IAM permissions this configuration needs, one statement per feature" >&2
"$whittle" self-policy --config "$config" --account staging > "$work/whittle-policy.json"
grep '"Sid"' "$work/whittle-policy.json" >&2
echo "==> whittle runs as a user holding only that policy; auth mode on: the emulator checks every call against IAM policies and boundaries" >&2
"$root/.venv-moto/bin/python" - "$endpoint" "$work/whittle-policy.json" "$work/whittle.env" <<'PY'
import sys

import boto3

endpoint, policy, out = sys.argv[1:]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName="whittle")
with open(policy) as document:
    iam.put_user_policy(UserName="whittle", PolicyName="whittle-staging", PolicyDocument=document.read())
key = iam.create_access_key(UserName="whittle")["AccessKey"]
with open(out, "w") as env:
    env.write(f"export AWS_ACCESS_KEY_ID={key['AccessKeyId']}\nexport AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n")
PY
# shellcheck disable=SC1091
. "$work/whittle.env"
"$root/.venv-moto/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/reset-auth', data=b'0', method='POST', headers={'Content-Type': 'text/plain'}))" "$endpoint"

echo "==> whittle rotate --dry-run: what is due, and each step a rotation would take (changes nothing)" >&2
"$whittle" rotate --config "$config" --dry-run

echo "==> whittle daemon for ${seconds}s (check-aws every 5s, discover every 10s, mine every 15s, rotate each secret every 10s); log: $work/daemon.log" >&2
"$whittle" daemon --config "$config" 2>"$work/daemon.log" &
daemon_pid=$!
sleep "$((seconds / 2))"
echo "==> whittle status (asked of the running daemon)" >&2
"$whittle" status --config "$config" --check-aws
sleep "$((seconds - seconds / 2))"
echo "==> SIGTERM: the daemon finishes its running step and exits 0" >&2
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=""
tail -n 3 "$work/daemon.log" >&2

echo "==> whittle status (read from the state directory)" >&2
"$whittle" status --config "$config"

echo "==> whittle usage: what each role really did, mined from the trail files in S3" >&2
"$whittle" usage --config "$config"
catalog=arn:aws:iam::123456789012:role/app-catalog
echo "==> whittle usage --role app-catalog: three functions share one role; what each used, apart" >&2
"$whittle" usage --config "$config" --role "$catalog"
echo "==> whittle mine again: incremental, only files delivered since the last run are read" >&2
"$whittle" mine --config "$config" --no-progress

echo "==> whittle plan: least-privilege policies from what each role used (a dry run; exit 2 = changes proposed)" >&2
# The demo's usage is minutes old, so [planner] min_observation_days is 0 here (14 by default).
expect_changes "$whittle" plan --config "$config" > "$work/plan.txt"
cat "$work/plan.txt"
plan_id="$(sed -n 's/^plan \(plan-[^ ]*\) .*/\1/p' "$work/plan.txt")"
echo "==> whittle plan show $plan_id --format terraform (also: json, markdown, cloudformation, serverless)" >&2
expect_changes "$whittle" plan --config "$config" show "$plan_id" --format terraform
echo "==> whittle plan show $plan_id --format markdown --output-dir: the pull-request comment(s), summary first" >&2
expect_changes "$whittle" plan --config "$config" show "$plan_id" --format markdown --output-dir "$work/review" >&2
head -n 8 "$work/review/plan-1.md"
size="$(wc -c < "$work/review/plan-1.md")"
echo "    ($size bytes in $(ls "$work/review" | wc -l) part(s))" >&2
[ "$size" -lt 8192 ] || { echo "demo: the plan's Markdown is $size bytes, over 8 KB" >&2; exit 1; }
echo "==> whittle apply $plan_id --force (no trial yet), then whittle rollback of each change" >&2
"$whittle" apply --config "$config" "$plan_id" --force | tee "$work/apply.txt"
"$whittle" rollback --config "$config" --role arn:aws:iam::123456789012:role/app-orders
"$whittle" rollback --config "$config" --role arn:aws:iam::123456789012:role/app-billing
split_id="$(grep -o 'undo: whittle rollback split-[^)]*' "$work/apply.txt" | sed 's/^undo: whittle rollback //')"
[ -n "$split_id" ] || { echo "demo: the apply did not split app-catalog" >&2; exit 1; }
"$whittle" rollback --config "$config" "$split_id"

cat > "$work/trial.toml" <<TRIAL
# The demo's trial: 20 s window, denials checked every 2 s, the orders function (run by the
# operator, who may assume its role) as exercise.
kind = "trial"
window = "20s"
detection_interval = "2s"
dead_man = "10m"
[exercise]
command = ["env", "AWS_ACCESS_KEY_ID=$operator_key", "AWS_SECRET_ACCESS_KEY=$operator_secret", "$root/.venv-moto/bin/python", "$root/tests/emulator/demo_workload.py", "$endpoint"]
timeout = "60s"
TRIAL
orders=arn:aws:iam::123456789012:role/app-orders
echo "==> whittle plan --role app-orders, then whittle trial: the plan drops dynamodb:DescribeTable, which the function needs now and then" >&2
expect_changes "$whittle" plan --config "$config" --role "$orders" > "$work/plan-orders.txt"
plan_id="$(sed -n 's/^plan \(plan-[^ ]*\) .*/\1/p' "$work/plan-orders.txt")"
first_plan="$plan_id"
code=0
"$whittle" trial --config "$config" --playbook "$work/trial.toml" "$plan_id" || code=$?
[ "$code" -eq 1 ] || { echo "the first trial should have rolled back (exit $code)" >&2; exit 1; }
echo "==> the next plan keeps what the trial found needed; its trial passes; it applies without --force" >&2
expect_changes "$whittle" plan --config "$config" --role "$orders" > "$work/plan-orders-2.txt"
grep -E "dynamodb:DescribeTable" "$work/plan-orders-2.txt" >&2
plan_id="$(sed -n 's/^plan \(plan-[^ ]*\) .*/\1/p' "$work/plan-orders-2.txt")"
echo "==> whittle plan diff: what the review has to look at again since the first plan" >&2
"$whittle" plan --config "$config" diff "$first_plan" "$plan_id" | tee "$work/plan-diff.txt"
grep -q "+ kept dynamodb:DescribeTable" "$work/plan-diff.txt"
echo "==> CloudTrail made slow (events visible 8 s after the call): the trial settles after its window until CloudTrail shows all of it" >&2
"$root/.venv-moto/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/whittle-emulator/visibility-lag', data=b'{\"lookup_seconds\": 8}', method='POST', headers={'Content-Type': 'application/json'}))" "$endpoint"
"$whittle" trial --config "$config" --playbook "$work/trial.toml" "$plan_id" 2> "$work/trial.log"
grep -E "settling|Trial finished" "$work/trial.log" >&2
grep -q "Window ended; settling until CloudTrail shows all of it" "$work/trial.log"
"$whittle" apply --config "$config" "$plan_id"
echo "==> one role per function: the plan for app-catalog splits it; its serverless.yml; a trial switches each function to its own role and back; then it is applied" >&2
expect_changes "$whittle" plan --config "$config" --role "$catalog" > "$work/plan-catalog.txt"
sed -n '/split:/,$p' "$work/plan-catalog.txt" | head -n 20
plan_id="$(sed -n 's/^plan \(plan-[^ ]*\) .*/\1/p' "$work/plan-catalog.txt")"
expect_changes "$whittle" plan --config "$config" show "$plan_id" --format serverless | sed -n '/^functions:/,$p'
cat > "$work/trial-catalog.toml" <<TRIAL
# The catalog service's trial: each function's work, run as the function's role of the moment.
kind = "trial"
window = "10s"
detection_interval = "2s"
dead_man = "10m"
[exercise]
command = ["env", "AWS_ACCESS_KEY_ID=$operator_key", "AWS_SECRET_ACCESS_KEY=$operator_secret", "$root/.venv-moto/bin/python", "$root/tests/emulator/function_workload.py", "$endpoint", "$root/tests/emulator/catalog_service.json"]
timeout = "60s"
TRIAL
"$root/.venv-moto/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/whittle-emulator/visibility-lag', data=b'{\"lookup_seconds\": 0}', method='POST', headers={'Content-Type': 'application/json'}))" "$endpoint"
"$whittle" trial --config "$config" --playbook "$work/trial-catalog.toml" "$plan_id"
"$whittle" apply --config "$config" "$plan_id"
echo "    each function now runs under its own role:" >&2
env AWS_ACCESS_KEY_ID="$operator_key" AWS_SECRET_ACCESS_KEY="$operator_secret" "$root/.venv-moto/bin/python" "$root/tests/emulator/function_workload.py" "$endpoint" "$root/tests/emulator/catalog_service.json"
echo "==> whittle status: trials, plans, changes, rotations" >&2
"$whittle" status --config "$config" | sed -n '/^trials/,$p'

echo "==> eating our own cooking: whittle's own calls, mined like any principal's, against what self-policy grants" >&2
"$root/.venv-moto/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/whittle-emulator/deliver', data=b'{}', method='POST', headers={'Content-Type': 'application/json'}))" "$endpoint"
"$whittle" mine --config "$config" --no-progress
"$whittle" usage --config "$config" --role arn:aws:iam::123456789012:user/whittle | head -n 12
# `whittle plan --self` exits 2 when a statement went unused in the look-back.
code=0
"$whittle" plan --config "$config" --self || code=$?
[ "$code" -eq 0 ] || [ "$code" -eq 2 ] || { echo "demo: whittle plan --self exited $code" >&2; exit 1; }
