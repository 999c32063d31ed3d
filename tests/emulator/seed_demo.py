"""Seeds the emulator with a small, realistic staging account for the quick-start demo.

Usage: seed_demo.py ENDPOINT_URL CREDENTIALS_FILE

Writes the demo operator's access key (an IAM user allowed everything, as whittle would run
in a staging account) to CREDENTIALS_FILE as shell `export` lines: the emulator checks every
call against IAM policies once the demo turns its auth mode on, for the trial.

- app-orders, app-billing: Lambda execution roles tagged whittle:managed=true, with the
  over-broad policies teams really write (s3:*, dynamodb:*, a Secrets Manager read, the
  AWS-managed AmazonSQSReadOnlyAccess);
- app-reports: an app role without the tag (not a target);
- app-break-glass: tagged, but matched by [targets] protected_patterns;
- AWSServiceRoleForLambdaReplicator under /aws-service-role/: service-linked, always protected;
- demo/payments-api-key: a secret in Secrets Manager, and /staging/orders/db-password, a
  SecureString parameter under the KMS alias alias/whittle-rotation (both rotated by the
  example config's [[rotation]] tables);
- a trail logging management and S3 data events to staging-cloudtrail-logs (the bucket the
  example config.toml mines), and workload traffic under the orders and billing roles, so
  the trail has real events to deliver; the billing function is denied one call.
"""

import functools
import json
import sys

import boto3

endpoint = sys.argv[1]
session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


@functools.cache
def _client(name, creds):
    return session.client(name, endpoint_url=endpoint, **dict(creds))


def client(name, **creds):
    """One client per service and credentials (each new one costs botocore tens of ms)."""
    return _client(name, tuple(sorted(creds.items())))


iam = client("iam")
iam.create_user(UserName="whittle-operator")
iam.put_user_policy(UserName="whittle-operator", PolicyName="operator", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
operator = iam.create_access_key(UserName="whittle-operator")["AccessKey"]
with open(sys.argv[2], "w") as out:
    out.write(f"export AWS_ACCESS_KEY_ID={operator['AccessKeyId']}\n"
              f"export AWS_SECRET_ACCESS_KEY={operator['SecretAccessKey']}\n")
lambda_trust = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com", "AWS": "*"}, "Action": "sts:AssumeRole"}],
})
managed = [{"Key": "whittle:managed", "Value": "true"}, {"Key": "team", "Value": "payments"}]
roles = {
    "app-orders": (managed, {"Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "dynamodb:*"], "Resource": "*"},
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"},
    ]}),
    "app-billing": (managed, {"Statement": [
        {"Effect": "Allow", "Action": ["sqs:*", "sns:Publish", "kms:*"], "Resource": "*"},
    ]}),
    "app-reports": ([{"Key": "team", "Value": "analytics"}], {"Statement": [
        {"Effect": "Allow", "Action": "athena:*", "Resource": "*"},
    ]}),
    "app-break-glass": (managed, {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
}
for name, (tags, policy) in roles.items():
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=lambda_trust, Tags=tags)
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", **policy}))
# Teams attach AWS-managed policies too; the plan replaces one with a smaller inline policy.
iam.attach_role_policy(RoleName="app-billing", PolicyArn="arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess")
iam.create_role(RoleName="AWSServiceRoleForLambdaReplicator", Path="/aws-service-role/replicator.lambda.amazonaws.com/",
                AssumeRolePolicyDocument=lambda_trust, Tags=managed)

client("secretsmanager").create_secret(Name="demo/payments-api-key", SecretString=json.dumps({"api_key": "demo-not-a-real-key"}))
# The KMS key the example config's SSM rotation uses, and the parameter it rotates.
rotation_key = client("kms").create_key(Description="whittle rotation")["KeyMetadata"]["KeyId"]
client("kms").create_alias(AliasName="alias/whittle-rotation", TargetKeyId=rotation_key)
client("ssm").put_parameter(Name="/staging/orders/db-password", Value="demo-not-a-real-password",
                            Type="SecureString", KeyId="alias/whittle-rotation")

s3 = client("s3")
s3.create_bucket(Bucket="staging-cloudtrail-logs")
s3.create_bucket(Bucket="orders-data")
# The orders table, which the orders function looks at now and then (never while mined).
client("dynamodb").create_table(TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                                BillingMode="PAY_PER_REQUEST")
trail = client("cloudtrail")
trail.create_trail(Name="staging-trail", S3BucketName="staging-cloudtrail-logs", IsMultiRegionTrail=True)
trail.put_event_selectors(TrailName="staging-trail", EventSelectors=[{
    "ReadWriteType": "All", "IncludeManagementEvents": True,
    "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}],
}])
trail.start_logging(Name="staging-trail")

# Workload traffic: the orders function at work, under its own role.
creds = client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/app-orders", RoleSessionName="orders-fn")["Credentials"]
as_orders = dict(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                 aws_session_token=creds["SessionToken"])
orders_s3 = client("s3", **as_orders)
for i in range(3):
    orders_s3.put_object(Bucket="orders-data", Key=f"orders/{i}.json", Body=b"{}")
    orders_s3.get_object(Bucket="orders-data", Key=f"orders/{i}.json")
client("secretsmanager", **as_orders).get_secret_value(SecretId="demo/payments-api-key")
client("s3", **as_orders).list_objects_v2(Bucket="orders-data", Prefix="orders/")

creds = client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/app-billing", RoleSessionName="billing-fn")["Credentials"]
as_billing = dict(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                  aws_session_token=creds["SessionToken"])
queue = client("sqs").create_queue(QueueName="invoices")["QueueUrl"]
client("sqs", **as_billing).send_message(QueueUrl=queue, MessageBody="{}")
client("sqs", **as_billing).receive_message(QueueUrl=queue)
key = client("kms").create_key()["KeyMetadata"]["KeyId"]
client("kms", **as_billing).encrypt(KeyId=key, Plaintext=b"invoice")
# The billing function tries an action its policy does not grant; CloudTrail records the
# denial (injected here as AWS would log it: the emulator does not enforce policies by default).
import urllib.request
denial = {"Records": [{
    "userIdentity": {"type": "AssumedRole", "accountId": "123456789012",
                     "arn": "arn:aws:sts::123456789012:assumed-role/app-billing/billing-fn",
                     "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::123456789012:role/app-billing"}}},
    "eventSource": "dynamodb.amazonaws.com", "eventName": "PutItem", "awsRegion": "us-east-1",
    "errorCode": "AccessDenied",
    "errorMessage": "User: arn:aws:sts::123456789012:assumed-role/app-billing/billing-fn is not authorized to perform: dynamodb:PutItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/invoices",
}]}
urllib.request.urlopen(urllib.request.Request(endpoint + "/whittle-emulator/events", data=json.dumps(denial).encode(),
                                              headers={"Content-Type": "application/json"}))

# A service whose three functions share one role (the Serverless Framework's default), each
# doing a different part of what the role allows: whittle's plan proposes a role per function.
catalog_policy = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::catalog-data/*"},
    {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"},
]}
iam.create_role(RoleName="app-catalog", AssumeRolePolicyDocument=lambda_trust, Tags=managed)
iam.put_role_policy(RoleName="app-catalog", PolicyName="app-catalog-policy", PolicyDocument=json.dumps(catalog_policy))
s3.create_bucket(Bucket="catalog-data")
s3.put_object(Bucket="catalog-data", Key="items.json", Body=b"{}")
client("sqs").create_queue(QueueName="catalog-audit")
# The smallest valid zip archive (an empty one): the emulator does not run function code.
empty_zip = b"PK\x05\x06" + b"\x00" * 18
for function in ("catalog-read", "catalog-write", "catalog-audit"):
    client("lambda").create_function(FunctionName=function, Runtime="python3.12", Handler="app.handler",
                                     Role="arn:aws:iam::123456789012:role/app-catalog", Code={"ZipFile": empty_zip})
# Each function at work, as its role (function_workload.py stands in for the code Lambda runs).
import os
import subprocess
here = os.path.dirname(os.path.abspath(__file__))
subprocess.run([sys.executable, os.path.join(here, "function_workload.py"), endpoint,
                os.path.join(here, "catalog_service.json")], check=True, stdout=subprocess.DEVNULL,
               env={**os.environ, "AWS_ACCESS_KEY_ID": operator["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": operator["SecretAccessKey"]})

print("seeded: 6 roles (3 targets, 2 protected, 1 not selected), 3 functions sharing a role, 1 secret, 1 parameter, 1 trail, workload traffic")
