"""The demo's orders function, as the trial's exercise runs it: it assumes its role, reads
and writes its objects, reads its API key, and (now and then, as on this run) checks its
DynamoDB table. Exits 1 when AWS denies a call.

Usage: demo_workload.py ENDPOINT_URL
"""

import sys

import boto3
from botocore.exceptions import ClientError

endpoint = sys.argv[1]
creds = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1").assume_role(
    RoleArn="arn:aws:iam::123456789012:role/app-orders", RoleSessionName="orders-fn")["Credentials"]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
          aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
try:
    s3 = boto3.client("s3", **kw)
    s3.put_object(Bucket="orders-data", Key="orders/trial.json", Body=b"{}")
    s3.get_object(Bucket="orders-data", Key="orders/trial.json")
    boto3.client("secretsmanager", **kw).get_secret_value(SecretId="demo/payments-api-key")
    boto3.client("dynamodb", **kw).describe_table(TableName="orders")
except ClientError as error:
    print(f"orders function: {error.response['Error']['Code']}", file=sys.stderr)
    sys.exit(1)
print("orders function: ok")
