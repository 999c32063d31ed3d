"""Lambda functions' work, as Lambda would run it: each function's calls made as the role
its configuration names at that moment (lambda:GetFunctionConfiguration), in a session named
after the function, so that CloudTrail records them as the function's. The emulator does not
run function code; this stands in for it in tests, the demo and trial exercises. Exits 1 when
AWS denies a call (as the function would fail).

Usage: function_workload.py ENDPOINT_URL SPEC.json
SPEC: {"function-name": [["service", "operation_name", {params}], ...], ...}
Runs with the caller's credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), which must
be allowed to assume the functions' roles.
"""

import json
import sys

import boto3
from botocore.exceptions import ClientError

endpoint, spec_path = sys.argv[1:3]
with open(spec_path) as f:
    spec = json.load(f)
region = "us-east-1"
failed = False
lambda_client = boto3.client("lambda", endpoint_url=endpoint, region_name=region)
sts = boto3.client("sts", endpoint_url=endpoint, region_name=region)
for function, calls in spec.items():
    role = lambda_client.get_function_configuration(FunctionName=function)["Role"]
    creds = sts.assume_role(RoleArn=role, RoleSessionName=function)["Credentials"]
    for service, operation, params in calls:
        client = boto3.client(service, endpoint_url=endpoint, region_name=region,
                              aws_access_key_id=creds["AccessKeyId"],
                              aws_secret_access_key=creds["SecretAccessKey"],
                              aws_session_token=creds["SessionToken"])
        try:
            getattr(client, operation)(**params)
        except ClientError as error:
            print(f"{function} ({role.rsplit('/', 1)[-1]}): {service} {operation}: "
                  f"{error.response['Error']['Code']}", file=sys.stderr)
            failed = True
            break
    else:
        print(f"{function} ({role.rsplit('/', 1)[-1]}): ok")
sys.exit(1 if failed else 0)
