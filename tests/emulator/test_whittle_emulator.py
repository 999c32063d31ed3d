"""The emulator extension's own test: each added behaviour through boto3, as a client sees it.

Run: .venv-moto/bin/python -m unittest discover -s tests/emulator -v
"""

import gzip
import json
import os
import subprocess
import sys
import time
import unittest
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))


class Emulator:
    def __init__(self, **env):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "whittle_emulator.py"), "--port", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, **env}, text=True,
        )
        line = self.proc.stdout.readline()
        self.url = line.strip().split("Running on ")[1]

    def client(self, service, key="testing", secret="testing", token=None):
        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
            config=Config(retries={"total_max_attempts": 1}),
        )

    def post(self, path, doc=None, content_type="application/json"):
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST", headers={"Content-Type": content_type})
        with urllib.request.urlopen(req) as resp:
            body = resp.read()
        try:
            return json.loads(body)
        except ValueError:
            return body

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class WithEmulator(unittest.TestCase):
    """One emulator per test class."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator()

    @classmethod
    def tearDownClass(cls):
        cls.emu.close()


class ExtensionTest(WithEmulator):
    def setUp(self):
        self.emu.post("/moto-api/reset")

    def test_calls_are_recorded_and_looked_up_without_secret_values(self):
        sm = self.emu.client("secretsmanager")
        sm.create_secret(Name="api/key", SecretString="s3cr3t-value")
        sm.get_secret_value(SecretId="api/key")
        ct = self.emu.client("cloudtrail")
        events = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "secretsmanager.amazonaws.com"}])["Events"]
        self.assertEqual([e["EventName"] for e in events], ["GetSecretValue", "CreateSecret"])
        record = json.loads(events[1]["CloudTrailEvent"])
        self.assertEqual(record["userIdentity"]["type"], "Root")
        self.assertEqual(record["requestParameters"]["secretString"], "HIDDEN_DUE_TO_SECURITY_REASONS")
        with urllib.request.urlopen(self.emu.url + "/whittle-emulator/events") as resp:
            recorded = resp.read().decode()
        self.assertIn("CreateSecret", recorded)
        self.assertNotIn("s3cr3t-value", recorded + json.dumps(events, default=str))

    def test_lookup_pages_fifty_at_most(self):
        sts = self.emu.client("sts")
        for _ in range(55):
            sts.get_caller_identity()
        ct = self.emu.client("cloudtrail")
        first = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetCallerIdentity"}])
        self.assertEqual(len(first["Events"]), 50)
        second = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetCallerIdentity"}], NextToken=first["NextToken"])
        self.assertEqual(len(second["Events"]), 5)
        self.assertNotIn("NextToken", second)

    def test_log_files_are_delivered_in_the_real_layout(self):
        s3 = self.emu.client("s3")
        s3.create_bucket(Bucket="trail-bucket")
        ct = self.emu.client("cloudtrail")
        ct.create_trail(Name="main", S3BucketName="trail-bucket", S3KeyPrefix="org")
        ct.start_logging(Name="main")
        self.emu.client("sts").get_caller_identity()
        keys = self.emu.post("/whittle-emulator/deliver")["delivered"]
        self.assertTrue(keys)
        key = keys[0].split("/", 3)[3]
        self.assertRegex(key, r"^org/AWSLogs/123456789012/CloudTrail/us-east-1/\d{4}/\d{2}/\d{2}/123456789012_CloudTrail_us-east-1_\d{8}T\d{4}Z_\w{16}\.json\.gz$")
        records = json.loads(gzip.decompress(s3.get_object(Bucket="trail-bucket", Key=key)["Body"].read()))["Records"]
        self.assertIn("GetCallerIdentity", [r["eventName"] for r in records])
        # Delivered events are not delivered twice.
        self.assertEqual(self.emu.post("/whittle-emulator/deliver")["delivered"][:0], [])

    def test_an_organization_trail_delivers_under_the_organization_id(self):
        s3 = self.emu.client("s3")
        s3.create_bucket(Bucket="org-trail-bucket")
        org_id = self.emu.client("organizations").create_organization(FeatureSet="ALL")["Organization"]["Id"]
        ct = self.emu.client("cloudtrail")
        ct.create_trail(Name="org", S3BucketName="org-trail-bucket", IsOrganizationTrail=True)
        ct.start_logging(Name="org")
        self.emu.client("sts").get_caller_identity()
        keys = [k for k in self.emu.post("/whittle-emulator/deliver")["delivered"] if "org-trail-bucket" in k]
        self.assertTrue(keys)
        self.assertRegex(keys[0].split("/", 3)[3], rf"^AWSLogs/{org_id}/123456789012/CloudTrail/us-east-1/\d{{4}}/")

    def test_simulate_principal_policy(self):
        iam = self.emu.client("iam")
        iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
        iam.put_role_policy(RoleName="app", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"},
                          {"Effect": "Deny", "Action": "s3:GetBucketPolicy", "Resource": "*"}],
        }))
        out = iam.simulate_principal_policy(
            PolicySourceArn="arn:aws:iam::123456789012:role/app",
            ActionNames=["s3:GetObject", "s3:PutObject", "s3:GetBucketPolicy"])
        self.assertEqual([r["EvalDecision"] for r in out["EvaluationResults"]], ["allowed", "implicitDeny", "explicitDeny"])

    def test_secret_default_version_follows_awscurrent(self):
        sm = self.emu.client("secretsmanager")
        v1 = sm.create_secret(Name="db", SecretString="one")["VersionId"]
        v2 = sm.put_secret_value(SecretId="db", SecretString="two", VersionStages=["AWSPENDING"])["VersionId"]
        sm.update_secret_version_stage(SecretId="db", VersionStage="AWSCURRENT", MoveToVersionId=v2, RemoveFromVersionId=v1)
        self.assertEqual(sm.get_secret_value(SecretId="db")["SecretString"], "two")
        sm.put_secret_value(SecretId="db", SecretString="three")
        stages = sm.describe_secret(SecretId="db")["VersionIdsToStages"]
        self.assertEqual(sum("AWSCURRENT" in s for s in stages.values()), 1)

    def test_seeded_native_rotation_outcomes(self):
        sm = self.emu.client("secretsmanager")
        sm.create_secret(Name="native", SecretString="one")
        self.emu.post("/whittle-emulator/native-rotation", {"secret": "native", "outcome": "succeed"})
        token = "t" * 40
        sm.rotate_secret(SecretId="native", ClientRequestToken=token, RotateImmediately=True)
        stages = sm.describe_secret(SecretId="native")["VersionIdsToStages"]
        self.assertEqual(stages[token], ["AWSCURRENT"])
        self.assertNotEqual(sm.get_secret_value(SecretId="native", VersionStage="AWSCURRENT")["SecretString"], "one")
        self.emu.post("/whittle-emulator/native-rotation", {"secret": "native", "outcome": "fail"})
        failed = "f" * 40
        sm.rotate_secret(SecretId="native", ClientRequestToken=failed, RotateImmediately=True)
        stages = sm.describe_secret(SecretId="native")["VersionIdsToStages"]
        self.assertEqual(stages[failed], ["AWSPENDING"])
        self.assertEqual(stages[token], ["AWSCURRENT"])

    def test_permissions_boundaries_limit_a_role_until_their_dead_man_deadline(self):
        iam = self.emu.client("iam")
        admin_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.create_user(UserName="boss")
        iam.put_user_policy(UserName="boss", PolicyName="all", PolicyDocument=json.dumps(admin_policy))
        key = iam.create_access_key(UserName="boss")["AccessKey"]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName="trial", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName="trial", PolicyName="broad", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))

        def boundary(deadline):
            return json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"},
                {"Sid": "DeadMan", "Effect": "Allow", "Action": "*", "Resource": "*",
                 "Condition": {"DateGreaterThan": {"aws:CurrentTime": deadline}}}]})

        future = iam.create_policy(PolicyName="b-future", PolicyDocument=boundary("2099-01-01T00:00:00Z"))["Policy"]["Arn"]
        past = iam.create_policy(PolicyName="b-past", PolicyDocument=boundary("2000-01-01T00:00:00Z"))["Policy"]["Arn"]
        iam.put_role_permissions_boundary(RoleName="trial", PermissionsBoundary=future)
        self.emu.post("/moto-api/reset-auth", b"0", content_type="text/plain")
        try:
            boss = dict(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
            creds = self.emu.client("sts", **boss).assume_role(
                RoleArn="arn:aws:iam::123456789012:role/trial", RoleSessionName="trial-session")["Credentials"]
            s3 = self.emu.client("s3", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
            s3.list_buckets()
            with self.assertRaises(ClientError) as caught:
                s3.create_bucket(Bucket="denied-by-boundary")
            self.assertIn(caught.exception.response["Error"]["Code"], ("AccessDenied", "AccessDeniedException"))
            # Past the dead-man deadline the boundary allows everything again.
            self.emu.client("iam", **boss).put_role_permissions_boundary(RoleName="trial", PermissionsBoundary=past)
            s3.create_bucket(Bucket="allowed-again")
            # Without a boundary, only the identity policy counts.
            self.emu.client("iam", **boss).delete_role_permissions_boundary(RoleName="trial")
            s3.create_bucket(Bucket="no-boundary")
        finally:
            self.emu.post("/moto-api/reset-auth", b"inf", content_type="text/plain")

    def test_cloudwatch_statistics_over_cbor(self):
        import datetime
        import importlib.util
        spec = importlib.util.spec_from_file_location("emu", os.path.join(HERE, "whittle_emulator.py"))
        emu = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(emu)
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.emu.client("cloudwatch").put_metric_data(Namespace="AWS/Lambda", MetricData=[
            {"MetricName": "Errors", "Dimensions": [{"Name": "FunctionName", "Value": "fn"}], "Value": 3, "Timestamp": now}])
        body = emu.cbor_encode({"Namespace": "AWS/Lambda", "MetricName": "Errors",
                                "Dimensions": [{"Name": "FunctionName", "Value": "fn"}],
                                "StartTime": now - datetime.timedelta(minutes=5), "EndTime": now + datetime.timedelta(minutes=5),
                                "Period": 60, "Statistics": ["Sum"]})
        req = urllib.request.Request(self.emu.url + "/service/GraniteServiceVersion20100801/operation/GetMetricStatistics",
                                     data=body, method="POST", headers={"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})
        with urllib.request.urlopen(req) as resp:
            answer = emu.cbor_decode(resp.read())
        self.assertEqual(sum(p["Sum"] for p in answer["Datapoints"]), 3.0)
        self.assertEqual(emu.cbor_decode(emu.cbor_encode({"a": [1, -2, "x", 1.5, None, True]})), {"a": [1, -2, "x", 1.5, None, True]})

    def test_faults_fail_the_next_matching_calls(self):
        self.emu.post("/whittle-emulator/faults", {"service": "cloudtrail", "action": "LookupEvents", "code": "ThrottlingException", "count": 1})
        ct = self.emu.client("cloudtrail")
        with self.assertRaises(ClientError) as caught:
            ct.lookup_events()
        self.assertEqual(caught.exception.response["Error"]["Code"], "ThrottlingException")
        ct.lookup_events()

    def test_a_delay_fault_holds_then_answers(self):
        self.emu.post("/whittle-emulator/faults", {"service": "sts", "action": "GetCallerIdentity", "delay_seconds": 1})
        started = time.monotonic()
        self.emu.client("sts").get_caller_identity()
        self.assertGreaterEqual(time.monotonic() - started, 1.0)


class AuthModeTest(WithEmulator):
    """A denied call by an assumed role is recorded as AccessDenied for that role, and the JSON
    service's error is readable by the client. Its own emulator: auth mode is server-wide."""

    def test_an_inactive_access_key_does_not_authenticate(self):
        iam = self.emu.client("iam")
        iam.create_user(UserName="svc")
        iam.put_user_policy(UserName="svc", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="svc")["AccessKey"]
        self.emu.post("/moto-api/reset-auth", b"0", content_type="text/plain")
        try:
            sts = self.emu.client("sts", key["AccessKeyId"], key["SecretAccessKey"])
            self.assertIn("user/svc", sts.get_caller_identity()["Arn"])
            self.emu.post("/moto-api/reset-auth", b"inf", content_type="text/plain")
            iam.update_access_key(UserName="svc", AccessKeyId=key["AccessKeyId"], Status="Inactive")
            self.emu.post("/moto-api/reset-auth", b"0", content_type="text/plain")
            with self.assertRaises(ClientError) as caught:
                sts.get_caller_identity()
            self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidClientTokenId")
        finally:
            self.emu.post("/moto-api/reset-auth", b"inf", content_type="text/plain")

    def test_denial_is_recorded_and_readable(self):
        iam = self.emu.client("iam")
        admin_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(admin_policy))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName="fn", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}))
        # From here on every call is checked against the caller's policies.
        self.emu.post("/moto-api/reset-auth", b"0", content_type="text/plain")
        admin = dict(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
        creds = self.emu.client("sts", **admin).assume_role(
            RoleArn="arn:aws:iam::123456789012:role/fn", RoleSessionName="orders-fn")["Credentials"]
        sm = self.emu.client("secretsmanager", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
        with self.assertRaises(ClientError) as caught:
            sm.list_secrets()
        self.assertEqual(caught.exception.response["Error"]["Code"], "AccessDeniedException")
        events = self.emu.client("cloudtrail", **admin).lookup_events(
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ListSecrets"}])["Events"]
        record = json.loads(events[0]["CloudTrailEvent"])
        self.assertEqual(record["errorCode"], "AccessDenied")
        self.assertEqual(record["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"], "arn:aws:iam::123456789012:role/fn")
        self.assertEqual(events[0]["Username"], "orders-fn")
        admin_event = json.loads(self.emu.client("cloudtrail", **admin).lookup_events(
            LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "admin"}])["Events"][0]["CloudTrailEvent"])
        self.assertEqual(admin_event["userIdentity"]["type"], "IAMUser")


if __name__ == "__main__":
    unittest.main()
