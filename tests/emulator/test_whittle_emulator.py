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
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))


def load_module():
    """The extension as a module (its functions, without starting a server)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("whittle_emulator", os.path.join(HERE, "whittle_emulator.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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

    def get(self, path):
        with urllib.request.urlopen(self.url + path) as resp:
            return json.loads(resp.read())

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

    def test_a_function_role_switch_checks_the_revision_and_the_role_as_lambda_does(self):
        # moto kept a function's RevisionId for life, ignored a stale one, and took any role.
        import io
        import zipfile
        iam, lam = self.emu.client("iam"), self.emu.client("lambda")
        trust = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
        shared = iam.create_role(RoleName="shared", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        own = iam.create_role(RoleName="own", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("app.py", "def handler(event, context): return {}\n")
        lam.create_function(FunctionName="fn", Runtime="python3.12", Handler="app.handler", Role=shared,
                            Code={"ZipFile": code.getvalue()})
        planned = lam.get_function_configuration(FunctionName="fn")["RevisionId"]
        updated = lam.update_function_configuration(FunctionName="fn", Role=own, RevisionId=planned)
        self.assertEqual(updated["Role"], own)
        self.assertNotEqual(updated["RevisionId"], planned)
        self.assertEqual(lam.get_function_configuration(FunctionName="fn")["RevisionId"], updated["RevisionId"])
        with self.assertRaises(ClientError) as caught:
            lam.update_function_configuration(FunctionName="fn", Role=shared, RevisionId=planned)
        self.assertEqual(caught.exception.response["Error"]["Code"], "PreconditionFailedException")
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        with self.assertRaises(ClientError) as caught:
            lam.update_function_configuration(FunctionName="fn", Role="arn:aws:iam::123456789012:role/gone")
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterValueException")
        self.assertIn("cannot be assumed by Lambda", caught.exception.response["Error"]["Message"])
        events = self.emu.client("cloudtrail").lookup_events(LookupAttributes=[
            {"AttributeKey": "EventSource", "AttributeValue": "lambda.amazonaws.com"}])["Events"]
        self.assertIn("UpdateFunctionConfiguration20150331v2", [e["EventName"] for e in events])
        self.emu.post("/whittle-emulator/role-propagation", json.dumps({"seconds": 60}).encode())
        young = iam.create_role(RoleName="young", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        with self.assertRaises(ClientError) as caught:
            lam.update_function_configuration(FunctionName="fn", Role=young)
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterValueException")
        self.emu.post("/whittle-emulator/role-propagation", json.dumps({"seconds": 0}).encode())
        self.assertEqual(lam.update_function_configuration(FunctionName="fn", Role=young)["Role"], young)

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

    def test_s3_sub_resource_operations_are_recorded_by_their_names(self):
        s3 = self.emu.client("s3")
        s3.create_bucket(Bucket="subs")
        s3.put_bucket_tagging(Bucket="subs", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
        s3.get_bucket_tagging(Bucket="subs")
        s3.delete_bucket_tagging(Bucket="subs")
        s3.get_bucket_location(Bucket="subs")
        s3.get_bucket_versioning(Bucket="subs")
        s3.get_bucket_acl(Bucket="subs")
        pab = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
        s3.put_public_access_block(Bucket="subs", PublicAccessBlockConfiguration=pab)
        s3.get_public_access_block(Bucket="subs")
        s3.delete_public_access_block(Bucket="subs")
        s3.put_bucket_encryption(Bucket="subs", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        s3.get_bucket_encryption(Bucket="subs")
        s3.delete_bucket_encryption(Bucket="subs")
        s3.put_bucket_lifecycle_configuration(Bucket="subs", LifecycleConfiguration={
            "Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]})
        s3.get_bucket_lifecycle_configuration(Bucket="subs")
        s3.delete_bucket_lifecycle(Bucket="subs")
        s3.put_bucket_policy(Bucket="subs", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::subs/*"}]}))
        s3.get_bucket_policy(Bucket="subs")
        s3.delete_bucket_policy(Bucket="subs")
        s3.list_objects(Bucket="subs")
        s3.list_objects_v2(Bucket="subs")
        s3.list_object_versions(Bucket="subs")
        s3.head_bucket(Bucket="subs")
        s3.put_object(Bucket="subs", Key="a/b.txt", Body=b"x")
        s3.head_object(Bucket="subs", Key="a/b.txt")
        s3.put_object_tagging(Bucket="subs", Key="a/b.txt", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
        s3.get_object_tagging(Bucket="subs", Key="a/b.txt")
        s3.delete_object_tagging(Bucket="subs", Key="a/b.txt")
        s3.get_object_acl(Bucket="subs", Key="a/b.txt")
        s3.copy_object(Bucket="subs", Key="c.txt", CopySource={"Bucket": "subs", "Key": "a/b.txt"})
        upload = s3.create_multipart_upload(Bucket="subs", Key="big")["UploadId"]
        s3.list_multipart_uploads(Bucket="subs")
        etag = s3.upload_part(Bucket="subs", Key="big", UploadId=upload, PartNumber=1, Body=b"y")["ETag"]
        s3.list_parts(Bucket="subs", Key="big", UploadId=upload)
        s3.complete_multipart_upload(Bucket="subs", Key="big", UploadId=upload,
                                     MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
        aborted = s3.create_multipart_upload(Bucket="subs", Key="gone")["UploadId"]
        s3.abort_multipart_upload(Bucket="subs", Key="gone", UploadId=aborted)
        s3.delete_objects(Bucket="subs", Delete={"Objects": [{"Key": "c.txt"}]})
        s3.delete_object(Bucket="subs", Key="a/b.txt")
        with urllib.request.urlopen(self.emu.url + "/whittle-emulator/events") as resp:
            records = json.loads(resp.read())["Records"]
        names = [r["eventName"] for r in records if r["eventSource"] == "s3.amazonaws.com"]
        self.assertEqual(names, [
            "CreateBucket", "PutBucketTagging", "GetBucketTagging", "DeleteBucketTagging",
            "GetBucketLocation", "GetBucketVersioning", "GetBucketAcl",
            "PutBucketPublicAccessBlock", "GetBucketPublicAccessBlock", "DeleteBucketPublicAccessBlock",
            "PutBucketEncryption", "GetBucketEncryption", "DeleteBucketEncryption",
            "PutBucketLifecycle", "GetBucketLifecycle", "DeleteBucketLifecycle",
            "PutBucketPolicy", "GetBucketPolicy", "DeleteBucketPolicy",
            "ListObjects", "ListObjectsV2", "ListObjectVersions", "HeadBucket",
            "PutObject", "HeadObject", "PutObjectTagging", "GetObjectTagging", "DeleteObjectTagging",
            "GetObjectAcl", "CopyObject",
            "CreateMultipartUpload", "ListMultipartUploads", "UploadPart", "ListParts", "CompleteMultipartUpload",
            "CreateMultipartUpload", "AbortMultipartUpload", "DeleteObjects", "DeleteObject",
        ])
        # Bucket configuration calls are management events, object calls data events.
        by_name = {r["eventName"]: r for r in records}
        self.assertTrue(by_name["GetBucketTagging"]["managementEvent"])
        self.assertTrue(by_name["GetBucketTagging"]["readOnly"])
        self.assertFalse(by_name["GetObjectTagging"]["managementEvent"])
        self.assertEqual(by_name["GetObjectTagging"]["requestParameters"]["key"], "a/b.txt")

    def test_s3_operations_and_the_actions_they_need(self):
        emu = load_module()
        cases = [
            (("GET", "/b", "tagging", {}), "GetBucketTagging", "s3:GetBucketTagging"),
            (("DELETE", "/b", "tagging", {}), "DeleteBucketTagging", "s3:PutBucketTagging"),
            (("GET", "/b", "policy", {}), "GetBucketPolicy", "s3:GetBucketPolicy"),
            (("GET", "/b", "policyStatus", {}), "GetBucketPolicyStatus", "s3:GetBucketPolicyStatus"),
            (("GET", "/b", "location", {}), "GetBucketLocation", "s3:GetBucketLocation"),
            (("GET", "/b", "versioning", {}), "GetBucketVersioning", "s3:GetBucketVersioning"),
            (("DELETE", "/b", "publicAccessBlock", {}), "DeleteBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
            (("GET", "/b", "publicAccessBlock", {}), "GetBucketPublicAccessBlock", "s3:GetBucketPublicAccessBlock"),
            (("GET", "/b", "encryption", {}), "GetBucketEncryption", "s3:GetEncryptionConfiguration"),
            (("DELETE", "/b", "encryption", {}), "DeleteBucketEncryption", "s3:PutEncryptionConfiguration"),
            (("GET", "/b", "lifecycle", {}), "GetBucketLifecycle", "s3:GetLifecycleConfiguration"),
            (("DELETE", "/b", "lifecycle", {}), "DeleteBucketLifecycle", "s3:PutLifecycleConfiguration"),
            (("GET", "/b", "cors", {}), "GetBucketCors", "s3:GetBucketCORS"),
            (("GET", "/b", "replication", {}), "GetBucketReplication", "s3:GetReplicationConfiguration"),
            (("GET", "/b", "ownershipControls", {}), "GetBucketOwnershipControls", "s3:GetBucketOwnershipControls"),
            (("DELETE", "/b", "ownershipControls", {}), "DeleteBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
            (("GET", "/b", "object-lock", {}), "GetObjectLockConfiguration", "s3:GetBucketObjectLockConfiguration"),
            (("GET", "/b", "accelerate", {}), "GetBucketAccelerateConfiguration", "s3:GetAccelerateConfiguration"),
            (("GET", "/b", "requestPayment", {}), "GetBucketRequestPayment", "s3:GetBucketRequestPayment"),
            (("GET", "/b", "inventory", {}), "ListBucketInventoryConfigurations", "s3:GetInventoryConfiguration"),
            (("GET", "/b", "inventory&id=x", {}), "GetBucketInventoryConfiguration", "s3:GetInventoryConfiguration"),
            (("PUT", "/b", "metrics&id=x", {}), "PutBucketMetricsConfiguration", "s3:PutMetricsConfiguration"),
            (("DELETE", "/b", "analytics&id=x", {}), "DeleteBucketAnalyticsConfiguration", "s3:PutAnalyticsConfiguration"),
            (("GET", "/b", "intelligent-tiering", {}), "ListBucketIntelligentTieringConfigurations", "s3:GetIntelligentTieringConfiguration"),
            (("GET", "/b", "", {}), "ListObjects", "s3:ListBucket"),
            (("GET", "/b", "list-type=2&prefix=a", {}), "ListObjectsV2", "s3:ListBucket"),
            (("GET", "/b", "versions", {}), "ListObjectVersions", "s3:ListBucketVersions"),
            (("GET", "/b", "uploads", {}), "ListMultipartUploads", "s3:ListBucketMultipartUploads"),
            (("HEAD", "/b", "", {}), "HeadBucket", "s3:ListBucket"),
            (("POST", "/b", "delete", {}), "DeleteObjects", "s3:DeleteObject"),
            (("GET", "/", "", {}), "ListBuckets", "s3:ListAllMyBuckets"),
            (("HEAD", "/b/k", "", {}), "HeadObject", "s3:GetObject"),
            (("HEAD", "/b/k", "versionId=1", {}), "HeadObject", "s3:GetObjectVersion"),
            (("GET", "/b/k", "tagging", {}), "GetObjectTagging", "s3:GetObjectTagging"),
            (("GET", "/b/k", "tagging&versionId=1", {}), "GetObjectTagging", "s3:GetObjectVersionTagging"),
            (("DELETE", "/b/k", "tagging", {}), "DeleteObjectTagging", "s3:DeleteObjectTagging"),
            (("PUT", "/b/k", "acl", {}), "PutObjectAcl", "s3:PutObjectAcl"),
            (("GET", "/b/k", "retention", {}), "GetObjectRetention", "s3:GetObjectRetention"),
            (("PUT", "/b/k", "legal-hold", {}), "PutObjectLegalHold", "s3:PutObjectLegalHold"),
            (("GET", "/b/k", "attributes", {}), "GetObjectAttributes", "s3:GetObjectAttributes"),
            (("POST", "/b/k", "uploads", {}), "CreateMultipartUpload", "s3:PutObject"),
            (("PUT", "/b/k", "partNumber=1&uploadId=u", {}), "UploadPart", "s3:PutObject"),
            (("PUT", "/b/k", "partNumber=1&uploadId=u", {"x-amz-copy-source": "b/j"}), "UploadPartCopy", "s3:PutObject"),
            (("GET", "/b/k", "uploadId=u", {}), "ListParts", "s3:ListMultipartUploadParts"),
            (("POST", "/b/k", "uploadId=u", {}), "CompleteMultipartUpload", "s3:PutObject"),
            (("DELETE", "/b/k", "uploadId=u", {}), "AbortMultipartUpload", "s3:AbortMultipartUpload"),
            (("POST", "/b/k", "restore", {}), "RestoreObject", "s3:RestoreObject"),
            (("PUT", "/b/k", "", {"x-amz-copy-source": "b/j"}), "CopyObject", "s3:PutObject"),
            (("DELETE", "/b/k", "versionId=1", {}), "DeleteObject", "s3:DeleteObjectVersion"),
            (("GET", "/b/k", "", {}), "GetObject", "s3:GetObject"),
        ]
        from urllib.parse import parse_qs
        for (method, path, qs, headers), name, action in cases:
            with self.subTest(method=method, path=path, qs=qs):
                query = parse_qs(qs, keep_blank_values=True)
                self.assertEqual(emu.s3_operation(method, path, query, headers)[0], name)
                self.assertEqual(emu.s3_iam_action(method, path, query, headers), action)

    def test_visibility_lag_set_at_run_time_holds_lookup_and_delivery(self):
        self.assertEqual(self.emu.get("/whittle-emulator/visibility-lag"), {"lookup_seconds": 0.0, "delivery_seconds": 0.0})
        s3 = self.emu.client("s3")
        s3.create_bucket(Bucket="lag-trail")
        ct = self.emu.client("cloudtrail")
        ct.create_trail(Name="lagged", S3BucketName="lag-trail")
        ct.start_logging(Name="lagged")
        lags = self.emu.post("/whittle-emulator/visibility-lag", {"lookup_seconds": 1.0, "delivery_seconds": 2.0})
        self.assertEqual(lags, {"lookup_seconds": 1.0, "delivery_seconds": 2.0})
        self.emu.client("sts").get_caller_identity()
        # The emulator records the event while it answers: its lag runs from a moment before
        # the answer arrives (on a loaded machine, well after the request left).
        answered = time.time()
        # Injected records are held from the moment they are injected, whatever their eventTime.
        self.emu.post("/whittle-emulator/events", {"Records": [{
            "eventName": "InjectedOld", "eventSource": "iam.amazonaws.com", "awsRegion": "us-east-1",
            "eventTime": "2020-01-01T00:00:00Z", "userIdentity": {"type": "Root", "accountId": "123456789012"}}]})

        def looked_up(name):
            return ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])["Events"]

        def delivered(name):
            self.emu.post("/whittle-emulator/deliver")
            names = []
            for item in s3.list_objects_v2(Bucket="lag-trail").get("Contents", []):
                body = s3.get_object(Bucket="lag-trail", Key=item["Key"])["Body"].read()
                names += [r["eventName"] for r in json.loads(gzip.decompress(body))["Records"]]
            return names.count(name)

        self.assertEqual(looked_up("GetCallerIdentity"), [])
        self.assertEqual(looked_up("InjectedOld"), [])
        self.assertEqual(delivered("GetCallerIdentity"), 0)
        time.sleep(max(0, answered + 1.2 - time.time()))
        events = looked_up("GetCallerIdentity")
        self.assertEqual(len(events), 1)
        # The event keeps the time of the call (to the second), not the time it became visible.
        self.assertLessEqual(events[0]["EventTime"].timestamp(), answered)
        self.assertEqual(len(looked_up("InjectedOld")), 1)
        self.assertEqual(delivered("GetCallerIdentity"), 0)
        time.sleep(max(0, answered + 2.2 - time.time()))
        self.assertEqual(delivered("GetCallerIdentity"), 1)
        # Not delivered twice, and nothing pending is lost.
        self.assertEqual(delivered("GetCallerIdentity"), 1)
        self.assertEqual(delivered("InjectedOld"), 1)
        # A reset goes back to the lags the emulator started with.
        self.emu.post("/whittle-emulator/reset")
        self.assertEqual(self.emu.get("/whittle-emulator/visibility-lag"), {"lookup_seconds": 0.0, "delivery_seconds": 0.0})

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

    def test_signed_lambda_calls_are_checked_against_the_policy_not_refused_as_unsigned(self):
        # moto checked a Lambda GET's signature over its headers, not the empty body sent:
        # every signed ListFunctions was SignatureDoesNotMatch, whatever the policy.
        iam = self.emu.client("iam")
        for name, action in (("lister", "lambda:ListFunctions"), ("other", "sts:GetCallerIdentity")):
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}))
        lister = iam.create_access_key(UserName="lister")["AccessKey"]
        other = iam.create_access_key(UserName="other")["AccessKey"]
        self.emu.post("/moto-api/reset-auth", b"0", content_type="text/plain")
        try:
            functions = self.emu.client("lambda", lister["AccessKeyId"], lister["SecretAccessKey"]).list_functions()
            self.assertEqual(functions["Functions"], [])
            with self.assertRaises(ClientError) as caught:
                self.emu.client("lambda", other["AccessKeyId"], other["SecretAccessKey"]).list_functions()
            self.assertEqual(caught.exception.response["Error"]["Code"], "AccessDeniedException")
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


    def test_auth_mode_checks_resource_arns_and_conditions_as_iam_does(self):
        """A policy scoped as `whittle self-policy` scopes it: by secret, parameter and key
        ARN, by role tag, by the boundary set, by alias and by listing prefix; moto alone
        matched such statements against "*" (never) and ignored or inverted the conditions."""
        iam = self.emu.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
        iam.create_role(RoleName="app-tagged", AssumeRolePolicyDocument=trust, Tags=[{"Key": "whittle:managed", "Value": "true"}])
        iam.create_role(RoleName="app-plain", AssumeRolePolicyDocument=trust)
        iam.create_role(RoleName="app-break-glass", AssumeRolePolicyDocument=trust, Tags=[{"Key": "whittle:managed", "Value": "true"}])
        sm = self.emu.client("secretsmanager")
        sm.create_secret(Name="demo/key", SecretString="a")
        sm.create_secret(Name="demo/other", SecretString="b")
        ssm = self.emu.client("ssm")
        ssm.put_parameter(Name="/app/db", Value="x", Type="String")
        ssm.put_parameter(Name="/app/other", Value="y", Type="String")
        kms = self.emu.client("kms")
        mine = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/rotation", TargetKeyId=mine)
        other = kms.create_key()["KeyMetadata"]["KeyId"]
        s3 = self.emu.client("s3")
        s3.create_bucket(Bucket="trail")
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
             "Resource": "arn:aws:secretsmanager:us-east-1:123456789012:secret:demo/key-??????"},
            {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/app/db"},
            {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "arn:aws:kms:us-east-1:123456789012:key/*",
             "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/rotation"}}},
            {"Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": "arn:aws:iam::*:role/app-*",
             "Condition": {"StringEquals": {"iam:ResourceTag/whittle:managed": "true"}}},
            {"Effect": "Allow", "Action": "iam:PutRolePermissionsBoundary", "Resource": "arn:aws:iam::*:role/app-*",
             "Condition": {"ArnLike": {"iam:PermissionsBoundary": "arn:aws:iam::123456789012:policy/whittle-*"}}},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::trail",
             "Condition": {"StringLike": {"s3:prefix": "AWSLogs/*"}}},
            {"Effect": "Deny", "Action": "iam:PutRolePolicy", "Resource": "arn:aws:iam::*:role/app-break-glass*"},
        ]}
        iam.create_user(UserName="scoped")
        iam.put_user_policy(UserName="scoped", PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="scoped")["AccessKey"]
        for name in ("whittle-t1", "other"):
            iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        self.emu.post("/moto-api/reset-auth", b"0", content_type="text/plain")
        try:
            as_scoped = dict(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
            c = {name: self.emu.client(name, **as_scoped) for name in ("secretsmanager", "ssm", "kms", "iam", "s3")}
            document = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})

            def denied(call, action):
                with self.assertRaises(ClientError) as caught:
                    call()
                message = caught.exception.response["Error"]["Message"]
                self.assertIn(f"not authorized to perform: {action}", message)
                return message

            c["secretsmanager"].get_secret_value(SecretId="demo/key")
            denied(lambda: c["secretsmanager"].get_secret_value(SecretId="demo/other"), "secretsmanager:GetSecretValue")
            c["ssm"].get_parameter(Name="/app/db")
            denied(lambda: c["ssm"].get_parameter(Name="/app/other"), "ssm:GetParameter")
            c["kms"].encrypt(KeyId="alias/rotation", Plaintext=b"v")
            c["kms"].encrypt(KeyId=mine, Plaintext=b"v")
            denied(lambda: c["kms"].encrypt(KeyId=other, Plaintext=b"v"), "kms:Encrypt")
            c["iam"].put_role_policy(RoleName="app-tagged", PolicyName="p", PolicyDocument=document)
            message = denied(lambda: c["iam"].put_role_policy(RoleName="app-plain", PolicyName="p", PolicyDocument=document), "iam:PutRolePolicy")
            self.assertIn("on resource: arn:aws:iam::123456789012:role/app-plain because no identity-based policy allows", message)
            message = denied(lambda: c["iam"].put_role_policy(RoleName="app-break-glass", PolicyName="p", PolicyDocument=document), "iam:PutRolePolicy")
            self.assertIn("with an explicit deny", message)
            c["iam"].put_role_permissions_boundary(RoleName="app-plain", PermissionsBoundary="arn:aws:iam::123456789012:policy/whittle-t1")
            denied(lambda: c["iam"].put_role_permissions_boundary(RoleName="app-plain", PermissionsBoundary="arn:aws:iam::123456789012:policy/other"),
                   "iam:PutRolePermissionsBoundary")
            c["s3"].list_objects_v2(Bucket="trail", Prefix="AWSLogs/123456789012/")
            denied(lambda: c["s3"].list_objects_v2(Bucket="trail", Prefix="other/"), "s3:ListBucket")
            denied(lambda: c["s3"].list_objects_v2(Bucket="trail"), "s3:ListBucket")
            # Calls the extension answers itself are checked too.
            denied(lambda: self.emu.client("cloudtrail", **as_scoped).lookup_events(), "cloudtrail:LookupEvents")
            denied(lambda: c["iam"].generate_service_last_accessed_details(Arn="arn:aws:iam::123456789012:role/app-plain"),
                   "iam:GenerateServiceLastAccessedDetails")
        finally:
            self.emu.post("/moto-api/reset-auth", b"inf", content_type="text/plain")

    def test_s3_sub_resource_denials_name_the_action_aws_checks(self):
        self.emu.post("/moto-api/reset-auth", b"inf", content_type="text/plain")
        iam = self.emu.client("iam")
        s3 = self.emu.client("s3")
        s3.create_bucket(Bucket="tagged")
        s3.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
        s3.put_object(Bucket="tagged", Key="k", Body=b"x")
        iam.create_user(UserName="boss3")
        iam.put_user_policy(UserName="boss3", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        boss = iam.create_access_key(UserName="boss3")["AccessKey"]
        boss = dict(key=boss["AccessKeyId"], secret=boss["SecretAccessKey"])
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps(trust))

        def allow(*actions):
            self.emu.client("iam", **boss).put_role_policy(RoleName="reader", PolicyName="p", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}))

        allow("s3:GetObject")
        self.emu.post("/moto-api/reset-auth", b"0", content_type="text/plain")
        try:
            creds = self.emu.client("sts", **boss).assume_role(
                RoleArn="arn:aws:iam::123456789012:role/reader", RoleSessionName="reader-fn")["Credentials"]
            reader = self.emu.client("s3", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
            reader.get_object(Bucket="tagged", Key="k")
            with self.assertRaises(ClientError) as caught:
                reader.get_bucket_tagging(Bucket="tagged")
            error = caught.exception.response["Error"]
            self.assertEqual(error["Code"], "AccessDenied")
            self.assertIn("arn:aws:sts::123456789012:assumed-role/reader/reader-fn is not authorized to perform: "
                          's3:GetBucketTagging on resource: "arn:aws:s3:::tagged"', error["Message"])
            events = self.emu.client("cloudtrail", **boss).lookup_events(
                LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetBucketTagging"}])["Events"]
            record = json.loads(events[0]["CloudTrailEvent"])
            self.assertEqual(record["eventName"], "GetBucketTagging")
            self.assertEqual(record["errorCode"], "AccessDenied")
            self.assertIn("not authorized to perform: s3:GetBucketTagging on resource", record["errorMessage"])
            self.assertEqual(self.emu.client("cloudtrail", **boss).lookup_events(
                LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ListObjects"}])["Events"], [])

            # The check moto makes is the one AWS makes: each call passes with exactly its action.
            calls = [
                ("s3:GetBucketTagging", lambda: reader.get_bucket_tagging(Bucket="tagged")),
                ("s3:ListBucket", lambda: reader.head_bucket(Bucket="tagged")),
                ("s3:ListBucket", lambda: reader.list_objects_v2(Bucket="tagged")),
                ("s3:GetBucketLocation", lambda: reader.get_bucket_location(Bucket="tagged")),
                ("s3:GetBucketVersioning", lambda: reader.get_bucket_versioning(Bucket="tagged")),
                ("s3:GetBucketAcl", lambda: reader.get_bucket_acl(Bucket="tagged")),
                ("s3:ListBucketVersions", lambda: reader.list_object_versions(Bucket="tagged")),
                ("s3:PutBucketPublicAccessBlock", lambda: reader.put_public_access_block(Bucket="tagged", PublicAccessBlockConfiguration={"BlockPublicAcls": True})),
                ("s3:GetBucketPublicAccessBlock", lambda: reader.get_public_access_block(Bucket="tagged")),
                ("s3:PutBucketPublicAccessBlock", lambda: reader.delete_public_access_block(Bucket="tagged")),
                ("s3:PutEncryptionConfiguration", lambda: reader.delete_bucket_encryption(Bucket="tagged")),
                ("s3:PutBucketTagging", lambda: reader.delete_bucket_tagging(Bucket="tagged")),
                ("s3:GetObjectTagging", lambda: reader.get_object_tagging(Bucket="tagged", Key="k")),
                ("s3:DeleteObjectTagging", lambda: reader.delete_object_tagging(Bucket="tagged", Key="k")),
                ("s3:ListBucketMultipartUploads", lambda: reader.list_multipart_uploads(Bucket="tagged")),
            ]
            for action, call in calls:
                with self.subTest(action=action):
                    allow("s3:GetObject")
                    with self.assertRaises(ClientError) as caught:
                        call()
                    denial = f"perform: {action} on resource"
                    if caught.exception.operation_name != "HeadBucket":  # a HEAD answer has no body
                        self.assertIn(denial, caught.exception.response["Error"]["Message"])
                    with urllib.request.urlopen(self.emu.url + "/whittle-emulator/events") as resp:
                        record = json.loads(resp.read())["Records"][-1]
                    self.assertEqual(record["errorCode"], "AccessDenied")
                    self.assertIn(denial, record["errorMessage"])
                    allow(action)
                    call()
        finally:
            self.emu.post("/moto-api/reset-auth", b"inf", content_type="text/plain")

class AuthorizationDetailsTest(unittest.TestCase):
    """GetAccountAuthorizationDetails as whittle reads an account with it: paged, with every
    field that grants or limits a role, AWS-managed policies only when in use, per account;
    and roles seeded in bulk."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(MOTO_IAM_LOAD_MANAGED_POLICIES="true")

    @classmethod
    def tearDownClass(cls):
        cls.emu.close()

    def pages(self, iam, **args):
        pages, marker = [], None
        while True:
            page = iam.get_account_authorization_details(**args, **({"Marker": marker} if marker else {}))
            pages.append(page)
            if not page["IsTruncated"]:
                return pages
            marker = page["Marker"]

    def test_pages_fields_filters_and_accounts(self):
        doc = lambda action: json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
        seeded = self.emu.post("/whittle-emulator/seed-iam", {
            "account": "123456789012",
            "policies": [{"name": "shared", "document": doc("s3:GetObject")}, {"name": "fence", "document": doc("s3:*")}],
            "roles": [{"name": f"gaad-{i}", "tags": {"team": "a"}, "inline": {"own": doc("sqs:SendMessage")},
                       "managed": ["arn:aws:iam::123456789012:policy/shared", "arn:aws:iam::aws:policy/ReadOnlyAccess"],
                       "boundary": "arn:aws:iam::123456789012:policy/fence" if i == 0 else None} for i in range(7)],
        })
        self.assertEqual(seeded, {"policies": 2, "roles": 7})
        iam = self.emu.client("iam")
        iam.create_policy_version(PolicyArn="arn:aws:iam::123456789012:policy/shared", PolicyDocument=doc("s3:PutObject"), SetAsDefault=True)

        pages = self.pages(iam, Filter=["Role", "LocalManagedPolicy", "AWSManagedPolicy"], MaxItems=3)
        self.assertEqual(len(pages), 4, "7 roles and 3 policies, 3 a page")
        self.assertTrue(all(len(p["RoleDetailList"]) + len(p["Policies"]) <= 3 for p in pages))
        roles = [r for p in pages for r in p["RoleDetailList"]]
        self.assertEqual(sorted(r["RoleName"] for r in roles), [f"gaad-{i}" for i in range(7)], "each role once")
        first = next(r for r in roles if r["RoleName"] == "gaad-0")
        self.assertEqual([p["PolicyName"] for p in first["RolePolicyList"]], ["own"])
        self.assertEqual(first["RolePolicyList"][0]["PolicyDocument"]["Statement"][0]["Action"], "sqs:SendMessage")
        self.assertEqual(sorted(p["PolicyArn"] for p in first["AttachedManagedPolicies"]),
                         ["arn:aws:iam::123456789012:policy/shared", "arn:aws:iam::aws:policy/ReadOnlyAccess"])
        self.assertEqual(first["PermissionsBoundary"]["PermissionsBoundaryArn"], "arn:aws:iam::123456789012:policy/fence")
        self.assertEqual(first["Tags"], [{"Key": "team", "Value": "a"}])
        policies = {p["Arn"]: p for page in pages for p in page["Policies"]}
        # AWS-managed policies only when in use: ReadOnlyAccess is attached, the other ~1,300 are not.
        self.assertEqual(sorted(policies), ["arn:aws:iam::123456789012:policy/fence", "arn:aws:iam::123456789012:policy/shared",
                                            "arn:aws:iam::aws:policy/ReadOnlyAccess"])
        self.assertEqual(policies["arn:aws:iam::123456789012:policy/shared"]["PolicyName"], "shared")
        self.assertTrue(policies["arn:aws:iam::aws:policy/ReadOnlyAccess"]["PolicyId"])
        versions = policies["arn:aws:iam::123456789012:policy/shared"]["PolicyVersionList"]
        default = [v for v in versions if v["IsDefaultVersion"]]
        self.assertEqual(len(versions), 2)
        self.assertEqual([v["VersionId"] for v in default], ["v2"])
        self.assertEqual(default[0]["Document"]["Statement"][0]["Action"], "s3:PutObject")

        only_roles = self.pages(iam, Filter=["Role"])
        self.assertEqual(len(only_roles), 1, "100 items a page by default")
        self.assertEqual(only_roles[0]["Policies"], [])
        self.assertEqual(len(only_roles[0]["RoleDetailList"]), 7)

        # Another account (credentials assumed into it) sees its own roles only.
        self.emu.post("/whittle-emulator/seed-iam", {"account": "222222222222", "roles": [{"name": "other-1"}]})
        creds = self.emu.client("sts").assume_role(RoleArn="arn:aws:iam::222222222222:role/reader", RoleSessionName="reader")["Credentials"]
        other = self.emu.client("iam", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
        names = [r["RoleName"] for p in self.pages(other, Filter=["Role", "LocalManagedPolicy"]) for r in p["RoleDetailList"]]
        self.assertEqual(names, ["other-1"])
        recorded = [e for e in self.emu.get("/whittle-emulator/events")["Records"] if e["eventName"] == "GetAccountAuthorizationDetails"]
        self.assertEqual(sorted({e["recipientAccountId"] for e in recorded}), ["123456789012", "222222222222"])

    def test_a_seeded_aws_managed_policy_is_loaded_on_demand(self):
        emu = Emulator()
        try:
            emu.post("/whittle-emulator/seed-iam", {"account": "333333333333", "roles": [
                {"name": "lambda-1", "managed": ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]}]})
            creds = emu.client("sts").assume_role(RoleArn="arn:aws:iam::333333333333:role/reader", RoleSessionName="reader")["Credentials"]
            iam = emu.client("iam", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
            page = iam.get_account_authorization_details(Filter=["Role", "AWSManagedPolicy"])
            self.assertEqual([p["Arn"] for p in page["Policies"]], ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])
            self.assertIn("logs:CreateLogGroup", json.dumps(page["Policies"][0]["PolicyVersionList"][0]["Document"]))
        finally:
            emu.close()

    def test_a_bad_seed_is_refused(self):
        with self.assertRaises(urllib.error.HTTPError) as caught:
            self.emu.post("/whittle-emulator/seed-iam", {"roles": [{"name": "x", "managed": ["arn:aws:iam::123456789012:policy/none"]}]})
        self.assertEqual(caught.exception.code, 400)


class LagFromEnvironmentTest(unittest.TestCase):
    """The lags set at start-up by environment variables; the two may differ."""

    @classmethod
    def setUpClass(cls):
        # 4 s: long enough that the first lookup below comes before it ends even on a loaded
        # machine (1.5 s did not, with two cores building).
        cls.emu = Emulator(WHITTLE_EMULATOR_LOOKUP_LAG_SECONDS="4", WHITTLE_EMULATOR_DELIVERY_LAG_SECONDS="0")

    @classmethod
    def tearDownClass(cls):
        cls.emu.close()

    def test_lookup_lags_while_delivery_does_not(self):
        self.assertEqual(self.emu.get("/whittle-emulator/visibility-lag"), {"lookup_seconds": 4.0, "delivery_seconds": 0.0})
        s3 = self.emu.client("s3")
        s3.create_bucket(Bucket="env-trail")
        ct = self.emu.client("cloudtrail")
        ct.create_trail(Name="env", S3BucketName="env-trail")
        ct.start_logging(Name="env")
        self.emu.client("sts").get_caller_identity()
        # The emulator records the event while it answers: its lag runs from a moment before
        # the answer arrives (on a loaded machine, well after the request left).
        answered = time.time()
        lookup = [{"AttributeKey": "EventName", "AttributeValue": "GetCallerIdentity"}]
        self.assertEqual(ct.lookup_events(LookupAttributes=lookup)["Events"], [])
        keys = self.emu.post("/whittle-emulator/deliver")["delivered"]
        records = [r for k in keys for r in json.loads(gzip.decompress(
            s3.get_object(Bucket="env-trail", Key=k.split("/", 3)[3])["Body"].read()))["Records"]]
        self.assertIn("GetCallerIdentity", [r["eventName"] for r in records])
        time.sleep(max(0, answered + 4.2 - time.time()))
        self.assertEqual(len(ct.lookup_events(LookupAttributes=lookup)["Events"]), 1)
        # A reset keeps the start-up lags.
        self.emu.post("/whittle-emulator/visibility-lag", {"lookup_seconds": 0})
        self.emu.post("/whittle-emulator/reset")
        self.assertEqual(self.emu.get("/whittle-emulator/visibility-lag")["lookup_seconds"], 4.0)

class ForkServerTest(unittest.TestCase):
    """fork_server.py, which the Rust harness starts its emulators with: each forked emulator is
    a server of its own (own state, own identifiers, start-up environment), stopped on request,
    and none outlives the fork server's stdin."""

    def test_forked_emulators_are_isolated_and_end_with_the_server(self):
        server = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fork_server.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

        def ask(request):
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            return json.loads(server.stdout.readline())

        def alive(pid):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False

        self.assertEqual(json.loads(server.stdout.readline()), {"ready": True})
        forked = []
        for env in ({}, {"WHITTLE_EMULATOR_LOOKUP_LAG_SECONDS": "2",
                         "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}):
            answer = ask({"start": env})
            emu = Emulator.__new__(Emulator)
            emu.url = answer["url"]
            forked.append((answer["pid"], emu))
        (pid_a, a), (pid_b, b) = forked
        self.assertEqual(a.get("/whittle-emulator/visibility-lag")["lookup_seconds"], 0.0)
        self.assertEqual(b.get("/whittle-emulator/visibility-lag")["lookup_seconds"], 2.0)
        a.client("secretsmanager").create_secret(Name="only-in-a", SecretString="x")
        self.assertEqual(b.client("secretsmanager").list_secrets()["SecretList"], [])
        keys = []
        for emu in (a, b):
            iam = emu.client("iam")
            iam.create_user(UserName="u")
            keys.append(iam.create_access_key(UserName="u")["AccessKey"]["AccessKeyId"])
        self.assertNotEqual(keys[0], keys[1], "each forked emulator draws its own identifiers")
        # The services were warmed up in the fork server, but each emulator's IAM backend is
        # its own, built with its own settings.
        sqs_read_only = "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"
        b.client("iam").get_policy(PolicyArn=sqs_read_only)
        with self.assertRaises(a.client("iam").exceptions.NoSuchEntityException):
            a.client("iam").get_policy(PolicyArn=sqs_read_only)
        self.assertEqual(ask({"stop": pid_a}), {"stopped": pid_a})
        self.assertFalse(alive(pid_a))
        self.assertTrue(alive(pid_b))
        server.stdin.close()
        server.wait(timeout=10)
        server.stdout.close()
        deadline = time.time() + 10
        while alive(pid_b) and time.time() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(pid_b), "an emulator outlived the fork server")


if __name__ == "__main__":
    unittest.main()
