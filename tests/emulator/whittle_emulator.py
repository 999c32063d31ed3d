"""whittle's local AWS emulator: moto in server mode, plus what moto lacks.

Started as `python whittle_emulator.py --port 0`; prints ` * Running on http://127.0.0.1:PORT`
once it answers, and exits when its stdin closes (so a test process that dies never leaves an
emulator behind) or on SIGTERM. The Rust tests fork it instead from fork_server.py, which
imports this module once and calls serve() in each child.

What it adds to moto 5.2.5 (see ../../../shared/EMULATOR.md for the measured gaps):
- CloudTrail recording of every signed API call the server handles: caller identity from the
  access key (assumed-role session, IAM user, or the account root), eventSource, eventName,
  readOnly, errorCode/errorMessage (denials as `AccessDenied`), requestParameters with secret
  values replaced by HIDDEN_DUE_TO_SECURITY_REASONS. Response bodies are never recorded.
- CloudTrail LookupEvents over the recording: one lookup attribute, time range, newest first,
  at most 50 a page, NextToken paging. Management events only, as in AWS.
- Delivery of gzip log files `{"Records":[...]}` to each logging trail's S3 bucket in the real
  layout, every WHITTLE_EMULATOR_DELIVERY_SECONDS (default 5) and on demand.
- IAM SimulatePrincipalPolicy / SimulateCustomPolicy on moto's own policy evaluator.
- IAM GenerateServiceLastAccessedDetails / GetServiceLastAccessedDetails from the recording.
- Auth-mode errors reshaped to the JSON protocol's format, so the SDK reads their code.
- Secrets Manager: moving AWSCURRENT with UpdateSecretVersionStage also moves the default
  version, so GetSecretValue without a stage and a later PutSecretValue behave as in AWS.
- IAM: in auth mode an Inactive access key no longer authenticates (AWS answers
  InvalidClientTokenId; moto accepted any existing key).
- IAM permissions boundaries are enforced in auth mode for roles and users (moto ignores them):
  a request is allowed only if the boundary allows it too, and a Deny in it denies. Boundary
  conditions on aws:CurrentTime / aws:EpochTime (Date* operators) are evaluated, so a
  boundary's dead-man statement ("allow everything after the deadline") works; a statement
  with any other condition does not apply.
- CloudWatch GetMetricStatistics over the Smithy RPC v2 CBOR protocol, which current AWS SDKs
  (the Rust one included) use for CloudWatch and moto 5.2.5 does not speak (404): decoded,
  answered from moto's metric store, encoded back. Other CBOR operations answer 501.
- Secrets Manager RotateSecret with a seeded outcome (moto cannot run a rotation Lambda
  without Docker): POST /whittle-emulator/native-rotation {"secret", "outcome": "succeed" |
  "fail"} makes the next RotateSecret of that secret act as a working Lambda (a new version
  becomes AWSCURRENT) or as one that failed after createSecret (AWSPENDING left on it).
- S3 calls recorded under their CloudTrail eventName per method and sub-resource (s3_call:
  GetBucketTagging, GetBucketPublicAccessBlock, GetBucketLifecycle, ListObjectVersions,
  CreateMultipartUpload, DeleteObjects, HeadBucket, CopyObject, …), and in auth mode checked by
  moto against the IAM action AWS checks (s3:GetBucketTagging, s3:ListBucket for
  ListObjects/HeadBucket, s3:PutBucketPublicAccessBlock for DeletePublicAccessBlock, …); a
  denial reads `User: ARN is not authorized to perform: s3:ACTION on resource: "arn:aws:s3:::…"
  because no identity-based policy allows the s3:ACTION action` (or `with an explicit deny in an
  identity-based policy`, `because no permissions boundary allows …`), in the response and in
  the recorded errorMessage (for a body-less HEAD denial, in the recording only).
- Athena executes the SQL it is sent (athena_engine.py): a `CREATE EXTERNAL TABLE` run through
  StartQueryExecution registers a table (AWS's CloudTrail table, partition projection), and a
  SELECT is transpiled from Trino to DuckDB and run over the trail files under the table's
  location in S3, reading only the partitions its WHERE clause allows; GetQueryExecution
  reports QUEUED/RUNNING/SUCCEEDED/FAILED with Athena's error messages and DataScannedInBytes,
  results are CSV at the output location, paged by GetQueryResults. While results seeded
  through moto's `/moto-api/static/athena/query-results` wait, moto answers (fault tests).
- IAM GetAccountAuthorizationDetails pages (MaxItems, Marker, IsTruncated; moto answers all at
  once) and lists only the AWS-managed policies in use, as AWS does.
- Lambda functions have a RevisionId; UpdateFunctionConfiguration checks it (412 PreconditionFailedException),
  gives the function a new RevisionId on every update, and refuses a role that does not exist
  or is younger than the role propagation time (env WHITTLE_EMULATOR_ROLE_PROPAGATION_SECONDS,
  default 0; POST /whittle-emulator/role-propagation {"seconds": N}) with
  InvalidParameterValueException "The role defined for the function cannot be assumed by
  Lambda.", as Lambda does.
- Control endpoints under /whittle-emulator/: POST seed-iam (thousands of roles and policies
  in one request, straight into moto's backend), POST events (inject records), GET events (every
  record, visible or not), POST deliver (deliver due log files now), POST faults (fail or delay
  the next N matching calls), GET/POST visibility-lag (below), and POST reset (clear the
  recording and faults, lags back to their start-up values; moto's /moto-api/reset does the same).

CloudTrail visibility lag (as in AWS, where events show up minutes after the call):
- An event recorded at T (a call: when the emulator answered it; an injected record: when it
  was injected, not its eventTime) is returned by LookupEvents only once now >= T + lookup lag,
  and written to trail log files only once now >= T + delivery lag (by the next delivery after
  that: the periodic one or POST deliver). Its eventTime stays T. A pending event is never
  lost nor delivered twice. Each event takes the lags in force when it is recorded.
- Start-up: env WHITTLE_EMULATOR_LOOKUP_LAG_SECONDS and WHITTLE_EMULATOR_DELIVERY_LAG_SECONDS
  (seconds, floats, default 0 = no lag).
- Run time: POST /whittle-emulator/visibility-lag with JSON {"lookup_seconds": N,
  "delivery_seconds": M} (numbers >= 0; a key left out keeps that lag; else 400) answers 200 with
  the lags now in force, {"lookup_seconds": N, "delivery_seconds": M}; GET on the same path
  returns them. Reset (POST /whittle-emulator/reset or /moto-api/reset) restores the start-up
  (environment) values, as it clears the other run-time settings (faults).
"""

import argparse
import datetime
import gzip
import io
import json
import os
import random
import re
import signal
import string
import sys
import threading
import time
import uuid
import xml.sax.saxutils
from urllib.parse import parse_qs, unquote, urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import athena_engine  # noqa: E402  (beside this file; it imports duckdb and sqlglot lazily)
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
# Request fields that carry secret material; CloudTrail hides these, and so does the recording.
SECRET_FIELDS = {
    "secretstring", "secretbinary", "value", "plaintext", "ciphertextblob", "password",
    "newpassword", "oldpassword", "secretaccesskey", "privatekey", "generatesecretstring",
}
READ_PREFIXES = ("Get", "List", "Describe", "Head", "Lookup", "Simulate", "BatchGet", "Select")
# Data events (not management events): object-level S3 and Lambda Invoke.
DATA_EVENTS = {
    "s3": {
        "GetObject", "PutObject", "PostObject", "HeadObject", "DeleteObject", "DeleteObjects", "CopyObject",
        "GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging", "GetObjectAcl", "PutObjectAcl",
        "GetObjectAttributes", "GetObjectRetention", "PutObjectRetention", "GetObjectLegalHold",
        "PutObjectLegalHold", "GetObjectTorrent", "RestoreObject", "SelectObjectContent",
        "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload",
        "AbortMultipartUpload", "ListParts",
    },
    "lambda": {"Invoke"},
}
JSON_ERROR_CODES = {
    "AccessDenied": "AccessDeniedException",
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
}
# Services of the REST-JSON protocol whose calls the tests make (their errors are JSON).
REST_JSON_SERVICES = {"lambda"}
SERVICE_NAMES = {
    "s3": "Amazon S3", "iam": "AWS Identity and Access Management", "sts": "AWS Security Token Service",
    "secretsmanager": "AWS Secrets Manager", "ssm": "AWS Systems Manager", "kms": "AWS Key Management Service",
    "lambda": "AWS Lambda", "cloudtrail": "AWS CloudTrail", "cloudwatch": "Amazon CloudWatch",
    "athena": "Amazon Athena", "dynamodb": "Amazon DynamoDB", "sqs": "Amazon SQS", "sns": "Amazon SNS",
}


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts):
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value):
    """CloudTrail times: ISO strings in records, epoch seconds in LookupEvents requests."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


# --- who is calling -------------------------------------------------------------------------

def backends(backend_dict):
    """(account_id, backend) for every instantiated account of a global moto service."""
    for account_id, per_partition in list(backend_dict.items()):
        for _partition, backend in list(per_partition.items()):
            yield account_id, backend


def identity_for(access_key_id):
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for account_id, sts in backends(sts_backends):
        role = sts.get_assumed_role_from_access_key(access_key_id)
        if role is not None:
            role_name = role.role_arn.split("/")[-1]
            try:
                role_id = role.user_id.split(":")[0]
            except Exception:  # the role may have been deleted since
                role_id = "AROA" + "0" * 17
            return {
                "type": "AssumedRole",
                "principalId": f"{role_id}:{role.session_name}",
                "arn": f"arn:aws:sts::{role.account_id}:assumed-role/{role_name}/{role.session_name}",
                "accountId": role.account_id,
                "accessKeyId": access_key_id,
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": role_id,
                        "arn": role.role_arn,
                        "accountId": role.account_id,
                        "userName": role_name,
                    },
                    "attributes": {"creationDate": iso(now_utc()), "mfaAuthenticated": "false"},
                },
            }
    for account_id, iam in backends(iam_backends):
        for user in list(iam.users.values()):
            if any(key.access_key_id == access_key_id for key in user.access_keys):
                return {
                    "type": "IAMUser",
                    "principalId": user.id,
                    "arn": user.arn,
                    "accountId": account_id,
                    "accessKeyId": access_key_id,
                    "userName": user.name,
                }
    account_id = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    return {
        "type": "Root",
        "principalId": account_id,
        "arn": f"arn:aws:iam::{account_id}:root",
        "accountId": account_id,
        "accessKeyId": access_key_id,
    }


def username_of(identity):
    kind = identity.get("type")
    if kind == "AssumedRole":
        return identity["arn"].split("/")[-1]
    if kind == "IAMUser":
        return identity.get("userName")
    if kind == "Root":
        return "root"
    return None


# --- what is being called ---------------------------------------------------------------------

AUTH_RE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


def camel(key):
    """CloudTrail writes request parameter names in camelCase (`SecretId` -> `secretId`)."""
    return key[:1].lower() + key[1:] if isinstance(key, str) else key


def hide_secrets(value):
    """Request parameters as CloudTrail records them: camelCase names, secret values hidden."""
    if isinstance(value, dict):
        return {camel(k): (HIDDEN if k.lower() in SECRET_FIELDS else hide_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_secrets(v) for v in value]
    return value


# S3 sub-resources: query key -> {method: (CloudTrail eventName, IAM action checked by AWS)}.
# Event names are CloudTrail's where it differs from the SDK operation (GetBucketLifecycle for
# GetBucketLifecycleConfiguration, Get/Put/DeleteBucketPublicAccessBlock for
# Get/Put/DeletePublicAccessBlock, GetBucketCors, GetBucketNotification, …); actions are those the
# Service Authorization Reference names for the operation (a Delete of a configuration mostly
# needs its Put permission). The first key present in the query decides.
def _config(name, get_action, put_action, delete_action=None):
    table = {
        "GET": (f"GetBucket{name}", get_action),
        "PUT": (f"PutBucket{name}", put_action),
    }
    if delete_action:
        table["DELETE"] = (f"DeleteBucket{name}", delete_action)
    return table


S3_BUCKET_SUBRESOURCES = (
    ("uploads", {"GET": ("ListMultipartUploads", "s3:ListBucketMultipartUploads")}),
    ("versions", {"GET": ("ListObjectVersions", "s3:ListBucketVersions")}),
    ("policyStatus", {"GET": ("GetBucketPolicyStatus", "s3:GetBucketPolicyStatus")}),
    ("policy", _config("Policy", "s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy")),
    ("tagging", _config("Tagging", "s3:GetBucketTagging", "s3:PutBucketTagging", "s3:PutBucketTagging")),
    ("acl", _config("Acl", "s3:GetBucketAcl", "s3:PutBucketAcl")),
    ("location", {"GET": ("GetBucketLocation", "s3:GetBucketLocation")}),
    ("versioning", _config("Versioning", "s3:GetBucketVersioning", "s3:PutBucketVersioning")),
    ("lifecycle", _config("Lifecycle", "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration", "s3:PutLifecycleConfiguration")),
    ("encryption", _config("Encryption", "s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration", "s3:PutEncryptionConfiguration")),
    ("publicAccessBlock", _config("PublicAccessBlock", "s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock")),
    ("cors", _config("Cors", "s3:GetBucketCORS", "s3:PutBucketCORS", "s3:PutBucketCORS")),
    ("website", _config("Website", "s3:GetBucketWebsite", "s3:PutBucketWebsite", "s3:DeleteBucketWebsite")),
    ("logging", _config("Logging", "s3:GetBucketLogging", "s3:PutBucketLogging")),
    ("notification", _config("Notification", "s3:GetBucketNotification", "s3:PutBucketNotification")),
    ("replication", _config("Replication", "s3:GetReplicationConfiguration", "s3:PutReplicationConfiguration", "s3:PutReplicationConfiguration")),
    ("ownershipControls", _config("OwnershipControls", "s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls", "s3:PutBucketOwnershipControls")),
    ("object-lock", {"GET": ("GetObjectLockConfiguration", "s3:GetBucketObjectLockConfiguration"),
                     "PUT": ("PutObjectLockConfiguration", "s3:PutBucketObjectLockConfiguration")}),
    ("accelerate", _config("AccelerateConfiguration", "s3:GetAccelerateConfiguration", "s3:PutAccelerateConfiguration")),
    ("requestPayment", _config("RequestPayment", "s3:GetBucketRequestPayment", "s3:PutBucketRequestPayment")),
) + tuple(
    # Get (with ?id) / List (without) / Put / Delete of a bucket's named configurations.
    (key, {
        "GET": (f"GetBucket{name}Configuration", f"s3:Get{name}Configuration"),
        "LIST": (f"ListBucket{name}Configurations", f"s3:Get{name}Configuration"),
        "PUT": (f"PutBucket{name}Configuration", f"s3:Put{name}Configuration"),
        "DELETE": (f"DeleteBucket{name}Configuration", f"s3:Put{name}Configuration"),
    })
    for key, name in (("inventory", "Inventory"), ("metrics", "Metrics"), ("analytics", "Analytics"),
                      ("intelligent-tiering", "IntelligentTiering"))
)

# Object sub-resources: query key -> {method: (eventName, action, action with ?versionId)}.
S3_OBJECT_SUBRESOURCES = (
    ("uploadId", {
        "GET": ("ListParts", "s3:ListMultipartUploadParts", None),
        "PUT": ("UploadPart", "s3:PutObject", None),
        "POST": ("CompleteMultipartUpload", "s3:PutObject", None),
        "DELETE": ("AbortMultipartUpload", "s3:AbortMultipartUpload", None),
    }),
    ("uploads", {"POST": ("CreateMultipartUpload", "s3:PutObject", None)}),
    ("tagging", {
        "GET": ("GetObjectTagging", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
        "PUT": ("PutObjectTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
        "DELETE": ("DeleteObjectTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    }),
    ("acl", {
        "GET": ("GetObjectAcl", "s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
        "PUT": ("PutObjectAcl", "s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    }),
    ("retention", {"GET": ("GetObjectRetention", "s3:GetObjectRetention", None),
                   "PUT": ("PutObjectRetention", "s3:PutObjectRetention", None)}),
    ("legal-hold", {"GET": ("GetObjectLegalHold", "s3:GetObjectLegalHold", None),
                    "PUT": ("PutObjectLegalHold", "s3:PutObjectLegalHold", None)}),
    ("attributes", {"GET": ("GetObjectAttributes", "s3:GetObjectAttributes", "s3:GetObjectVersionAttributes")}),
    ("torrent", {"GET": ("GetObjectTorrent", "s3:GetObjectTorrent", "s3:GetObjectVersionTorrent")}),
    ("restore", {"POST": ("RestoreObject", "s3:RestoreObject", None)}),
    ("select", {"POST": ("SelectObjectContent", "s3:GetObject", None)}),
)
S3_OBJECT_DEFAULTS = {
    "GET": ("GetObject", "s3:GetObject", "s3:GetObjectVersion"),
    "HEAD": ("HeadObject", "s3:GetObject", "s3:GetObjectVersion"),
    "PUT": ("PutObject", "s3:PutObject", None),
    "DELETE": ("DeleteObject", "s3:DeleteObject", "s3:DeleteObjectVersion"),
    "POST": ("PostObject", "s3:PutObject", None),
}


def s3_call(method, on_object, query, headers):
    """(CloudTrail eventName, IAM action AWS checks) of an S3 request on a bucket or object.
    `query` must come from parse_qs(..., keep_blank_values=True): sub-resources are blank keys."""
    copy = "x-amz-copy-source" in headers
    if on_object:
        for key, by_method in S3_OBJECT_SUBRESOURCES:
            if key in query and method in by_method:
                name, action, versioned = by_method[method]
                break
        else:
            name, action, versioned = S3_OBJECT_DEFAULTS.get(method, (method, None, None))
            if method == "PUT" and copy:
                name = "CopyObject"
        if name == "UploadPart" and copy:
            name = "UploadPartCopy"
        if versioned and "versionId" in query:
            action = versioned
        return name, action
    for key, by_method in S3_BUCKET_SUBRESOURCES:
        if key in query and method in by_method:
            if method == "GET" and "LIST" in by_method and "id" not in query:
                return by_method["LIST"]
            return by_method[method]
    if method == "GET":
        return ("ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"), "s3:ListBucket"
    if method == "POST":
        return ("DeleteObjects", "s3:DeleteObject") if "delete" in query else ("PostObject", "s3:PutObject")
    return {
        "PUT": ("CreateBucket", "s3:CreateBucket"),
        "DELETE": ("DeleteBucket", "s3:DeleteBucket"),
        "HEAD": ("HeadBucket", "s3:ListBucket"),
    }.get(method, (method, None))


def s3_operation(method, path, query, headers):
    """(eventName, requestParameters) of a path-style S3 request."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "ListBuckets", {}
    params = {"bucketName": parts[0]}
    if len(parts) > 1:
        params["key"] = unquote("/".join(parts[1:]))
    return s3_call(method, len(parts) > 1, query, headers)[0], params


def s3_iam_action(method, path, query, headers):
    """The IAM action AWS checks for a path-style S3 request (None if unknown)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "s3:ListAllMyBuckets"
    return s3_call(method, len(parts) > 1, query, headers)[1]


def lambda_operation(method, path):
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[1] == "functions":
        if len(parts) == 2:
            return ("CreateFunction20150331" if method == "POST" else "ListFunctions20150331"), {}
        params = {"functionName": unquote(parts[2])}
        if len(parts) >= 4 and parts[3] == "invocations":
            return "Invoke", params
        if len(parts) == 3:
            return {"GET": "GetFunction20150331v2", "DELETE": "DeleteFunction20150331"}.get(method, method), params
        # CloudTrail's names: a PUT of the configuration or code is an Update.
        if method == "PUT" and parts[3] in ("configuration", "code"):
            return f"UpdateFunction{parts[3].capitalize()}20150331v2", params
        return f"{method.capitalize()}Function{parts[3].capitalize()}20150331", params
    return f"{method}{path}", {}


def describe_request(environ, body):
    """(access_key, region, service, action, params) of a signed request, else None."""
    match = AUTH_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        return None
    access_key, region, service = match.groups()
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "/")
    # Blank keys kept: S3 names its sub-resources by them (`?tagging`, `?uploads`).
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    target = environ.get("HTTP_X_AMZ_TARGET")
    headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
    params = {}
    if target:
        action = target.split(".")[-1]
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
    elif "/operation/" in path:  # smithy rpc-v2 (e.g. CloudWatch): body is CBOR, not recorded
        action = path.rsplit("/", 1)[-1]
    elif service == "s3":
        action, params = s3_operation(method, path, query, headers)
    elif service == "lambda":
        action, params = lambda_operation(method, path)
    else:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True) if body else {}
        form.update(query)
        action = (form.pop("Action", [None]) or [None])[0] or f"{method}{path}"
        form.pop("Version", None)
        params = {k: v[0] if len(v) == 1 else v for k, v in form.items()}
    return access_key, region, service, action, hide_secrets(params)


def error_of(status, body):
    """(errorCode, errorMessage) of an error response, in CloudTrail's spelling."""
    if status < 400:
        return None, None
    text = body.decode("utf-8", "replace")
    code = message = None
    try:
        doc = json.loads(text)
        code = (doc.get("__type") or doc.get("code") or "").split("#")[-1] or None
        message = doc.get("message") or doc.get("Message")
    except ValueError:
        found = re.search(r"<Code>([^<]+)</Code>", text)
        code = found.group(1) if found else None
        found = re.search(r"<Message>([^<]*)</Message>", text)
        message = xml.sax.saxutils.unescape(found.group(1)) if found else None
    if code in ("AccessDeniedException",):
        code = "AccessDenied"
    return code or f"HTTP{status}", message


# --- the recording ----------------------------------------------------------------------------

class Recorder:
    """The recording, with CloudTrail's visibility lag.

    Each event is stamped when it is recorded (a call: when the emulator answered it; an
    injected record: when it was injected, whatever its eventTime says) with the moment it
    becomes visible to LookupEvents (+ lookup_lag) and the moment it may be delivered to trail
    files (+ delivery_lag), using the lags in force then: changing a lag affects the events
    recorded afterwards, never hides an event already visible. eventTime keeps the call time."""

    def __init__(self, lookup_lag=0.0, delivery_lag=0.0):
        self.lock = threading.Lock()
        self.delivery_lock = threading.Lock()  # one delivery at a time: none is written twice
        self.events = []
        self.due = []  # per event, (visible to LookupEvents at, deliverable at), time.monotonic()
        self.delivered = {}  # trail ARN -> {"next": first index not delivered, "done": indices past it}
        self.faults = []
        self.jobs = {}
        self.start_lags = (float(lookup_lag), float(delivery_lag))
        self.lookup_lag, self.delivery_lag = self.start_lags

    def add(self, event):
        with self.lock:
            now = time.monotonic()
            self.events.append(event)
            self.due.append((now + self.lookup_lag, now + self.delivery_lag))

    def snapshot(self):
        """Every event recorded, visible or not (GET /whittle-emulator/events, last-accessed)."""
        with self.lock:
            return list(self.events)

    def visible(self):
        """The events LookupEvents may return now."""
        now = time.monotonic()
        with self.lock:
            return [e for e, (lookup_at, _) in zip(self.events, self.due) if lookup_at <= now]

    def lags(self):
        with self.lock:
            return {"lookup_seconds": self.lookup_lag, "delivery_seconds": self.delivery_lag}

    def set_lags(self, lookup=None, delivery=None):
        with self.lock:
            if lookup is not None:
                self.lookup_lag = float(lookup)
            if delivery is not None:
                self.delivery_lag = float(delivery)

    def reset(self):
        """Clears the recording and faults; the lags go back to their start-up values."""
        with self.lock:
            self.events.clear()
            self.due.clear()
            self.delivered.clear()
            self.faults.clear()
            self.jobs.clear()
            self.lookup_lag, self.delivery_lag = self.start_lags

    def take_deliverable(self, arn):
        """The events due for delivery to a trail and not yet delivered to it, marked delivered."""
        now = time.monotonic()
        with self.lock:
            state = self.delivered.setdefault(arn, {"next": 0, "done": set()})
            batch = [
                i for i in range(state["next"], len(self.events))
                if i not in state["done"] and self.due[i][1] <= now
            ]
            state["done"].update(batch)
            while state["next"] in state["done"]:
                state["done"].discard(state["next"])
                state["next"] += 1
            return [self.events[i] for i in batch]

    def take_fault(self, service, action):
        with self.lock:
            for fault in self.faults:
                if fault["service"] in (service, "*") and fault["action"] in (action, "*") and fault["count"] > 0:
                    fault["count"] -= 1
                    return fault
        return None


def make_event(identity, region, service, action, params, status, code, message, source_ip, user_agent):
    read_only = action.startswith(READ_PREFIXES)
    data = action in DATA_EVENTS.get(service, ())
    event = {
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": iso(now_utc()),
        "eventSource": f"{service}.amazonaws.com",
        "eventName": action,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": params or None,
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": not data,
        "recipientAccountId": identity.get("accountId"),
        "eventCategory": "Data" if data else "Management",
    }
    if code:
        event["errorCode"] = code
        if message:
            event["errorMessage"] = message
    return event


# --- CloudTrail LookupEvents --------------------------------------------------------------------

LOOKUP_KEYS = {
    "EventId": lambda e: e.get("eventID"),
    "EventName": lambda e: e.get("eventName"),
    "ReadOnly": lambda e: str(e.get("readOnly")).lower(),
    "Username": lambda e: username_of(e.get("userIdentity") or {}),
    "EventSource": lambda e: e.get("eventSource"),
    "AccessKeyId": lambda e: (e.get("userIdentity") or {}).get("accessKeyId"),
    "ResourceName": lambda e: [r.get("ARN") for r in e.get("resources") or []],
    "ResourceType": lambda e: [r.get("type") for r in e.get("resources") or []],
}


def lookup_events(recorder, request, account_id, region):
    attrs = request.get("LookupAttributes") or []
    if len(attrs) > 1:
        return 400, {"__type": "InvalidLookupAttributesException", "message": "You cannot specify more than one lookup attribute."}
    start = parse_time(request.get("StartTime"))
    end = parse_time(request.get("EndTime"))
    if start and end and start > end:
        return 400, {"__type": "InvalidTimeRangeException", "message": "StartTime must be before EndTime."}
    limit = int(request.get("MaxResults") or 50)
    if not 1 <= limit <= 50:
        return 400, {"__type": "InvalidMaxResultsException", "message": "MaxResults must be between 1 and 50."}
    events = [
        e for e in recorder.visible()
        if e.get("managementEvent", True) and e.get("recipientAccountId") == account_id and e.get("awsRegion") == region
    ]
    for attr in attrs:
        key, wanted = attr.get("AttributeKey"), attr.get("AttributeValue")
        getter = LOOKUP_KEYS.get(key)
        if getter is None:
            return 400, {"__type": "InvalidLookupAttributesException", "message": f"Unknown attribute key {key}"}
        events = [e for e in events if wanted == getter(e) or (isinstance(getter(e), list) and wanted in getter(e))]
    if start:
        events = [e for e in events if parse_time(e["eventTime"]) >= start]
    if end:
        events = [e for e in events if parse_time(e["eventTime"]) <= end]
    events.reverse()  # newest first, as LookupEvents returns them
    offset = int(request.get("NextToken") or 0)
    page = events[offset:offset + limit]
    body = {
        "Events": [
            {
                "EventId": e.get("eventID"),
                "EventName": e.get("eventName"),
                "ReadOnly": str(e.get("readOnly")).lower(),
                "AccessKeyId": (e.get("userIdentity") or {}).get("accessKeyId"),
                "EventTime": parse_time(e["eventTime"]).timestamp(),
                "EventSource": e.get("eventSource"),
                "Username": username_of(e.get("userIdentity") or {}),
                "Resources": [{"ResourceType": r.get("type"), "ResourceName": r.get("ARN")} for r in e.get("resources") or []],
                "CloudTrailEvent": json.dumps(e),
            }
            for e in page
        ]
    }
    if offset + limit < len(events):
        body["NextToken"] = str(offset + limit)
    return 200, body


# --- log file delivery ------------------------------------------------------------------------

# The organization id of an organization trail's files when the account made no organization
# in the emulator (real AWS requires one; the emulator's trails do not).
STAND_IN_ORGANIZATION_ID = "o-a1b2c3d4e5"


def organization_id(account_id):
    """The id of the organization `account_id` created in moto, or the stand-in."""
    try:
        from moto.organizations.models import organizations_backends
        org = organizations_backends[account_id]["aws"].org
        if org is not None:
            return org.id
    except Exception:
        pass
    return STAND_IN_ORGANIZATION_ID


def deliver(recorder):
    """Writes each logging trail's events that are due (past the delivery lag) and not yet
    delivered to it to its bucket. Returns the keys written."""
    with recorder.delivery_lock:
        return _deliver(recorder)


def _deliver(recorder):
    from moto.cloudtrail.models import cloudtrail_backends
    from moto.s3.models import s3_backends

    written = []
    for account_id, per_region in list(cloudtrail_backends.items()):
        for trail_region, backend in list(per_region.items()):
            for trail in list(backend.trails.values()):
                if not trail.status.is_logging:
                    continue
                due = recorder.take_deliverable(trail.arn)
                wants_data = bool(trail.advanced_event_selectors) or any(
                    s.get("DataResources") for s in trail.event_selectors or []
                )
                fresh = [
                    e for e in due
                    if e.get("recipientAccountId") == account_id
                    and (trail.is_multi_region or e.get("awsRegion") == trail_region)
                    and (e.get("managementEvent", True) or wants_data)
                ]
                by_region = {}
                for e in fresh:
                    by_region.setdefault(e.get("awsRegion"), []).append(e)
                stamp = now_utc()
                for region, records in sorted(by_region.items()):
                    suffix = "".join(random.choices(string.ascii_letters + string.digits, k=16))
                    name = f"{account_id}_CloudTrail_{region}_{stamp:%Y%m%dT%H%MZ}_{suffix}.json.gz"
                    prefix = f"{trail.s3_key_prefix.rstrip('/')}/" if trail.s3_key_prefix else ""
                    # An organization trail adds the organization's id above the account:
                    # AWSLogs/o-…/ACCOUNT/CloudTrail/…
                    if getattr(trail, "is_org_trail", False):
                        prefix += f"AWSLogs/{organization_id(account_id)}/"
                    else:
                        prefix += "AWSLogs/"
                    key = f"{prefix}{account_id}/CloudTrail/{region}/{stamp:%Y/%m/%d}/{name}"
                    body = gzip.compress(json.dumps({"Records": records}).encode())
                    s3 = s3_backends[account_id]["aws"]
                    s3.put_object(trail.bucket_name, key, body)
                    written.append(f"s3://{trail.bucket_name}/{key}")
    return written


# --- IAM simulation and last-accessed ---------------------------------------------------------

def query_list(params, name):
    """Values of a query-protocol list `Name.member.N`, in order."""
    found = []
    for key, value in params.items():
        m = re.fullmatch(re.escape(name) + r"\.member\.(\d+)", key)
        if m:
            found.append((int(m.group(1)), value[0] if isinstance(value, list) else value))
    return [v for _, v in sorted(found)]


def principal_policies(arn):
    """(identity policy documents, boundary documents) of a user or role, from moto's IAM."""
    from moto.iam.models import iam_backends

    account_id = arn.split(":")[4]
    iam = iam_backends[account_id]["aws"]
    name = arn.split("/")[-1]
    docs, boundary_arn = [], None
    if ":role/" in arn:
        entity = iam.get_role(name)
        boundary_arn = entity.permissions_boundary_arn
        holders = [entity]
    elif ":user/" in arn:
        entity = iam.get_user(name)
        boundary_arn = getattr(entity, "permissions_boundary_arn", None)
        holders = [entity] + list(iam.get_groups_for_user(name))
    else:
        raise ValueError(f"PolicySourceArn {arn} is not a user or role")
    for holder in holders:
        docs.extend(unquote(doc) if isinstance(doc, str) else json.dumps(doc) for doc in holder.policies.values())
        for policy in holder.managed_policies.values():
            docs.append(default_document(policy))
    boundary = [default_document(iam.get_policy(boundary_arn))] if boundary_arn else []
    return docs, boundary


def default_document(policy):
    version = next(v for v in policy.versions if v.is_default)
    doc = version.document
    return doc if isinstance(doc, str) else json.dumps(doc)


def decide(docs, action, resource):
    from moto.iam.access_control import IAMPolicy, PermissionResult

    allowed = False
    for doc in docs:
        result = IAMPolicy(doc).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return "explicitDeny"
        if result == PermissionResult.PERMITTED:
            allowed = True
    return "allowed" if allowed else "implicitDeny"


def simulate(params, custom):
    actions = query_list(params, "ActionNames")
    resources = query_list(params, "ResourceArns") or ["*"]
    extra = query_list(params, "PolicyInputList")
    boundary_override = query_list(params, "PermissionsBoundaryPolicyInputList")
    if custom:
        docs, boundary = extra, boundary_override
    else:
        docs, boundary = principal_policies(params["PolicySourceArn"])
        docs += extra
        boundary = boundary_override or boundary
    members = []
    for action in actions:
        for resource in resources:
            decision = decide(docs, action, resource)
            if decision == "allowed" and boundary:
                bound = decide(boundary, action, resource)
                decision = "allowed" if bound == "allowed" else bound
            members.append(
                "<member>"
                f"<EvalActionName>{xml.sax.saxutils.escape(action)}</EvalActionName>"
                f"<EvalResourceName>{xml.sax.saxutils.escape(resource)}</EvalResourceName>"
                f"<EvalDecision>{decision}</EvalDecision>"
                "<MatchedStatements/><MissingContextValues/>"
                "</member>"
            )
    op = "SimulateCustomPolicy" if custom else "SimulatePrincipalPolicy"
    return query_response(op, f"<IsTruncated>false</IsTruncated><EvaluationResults>{''.join(members)}</EvaluationResults>")


def generate_last_accessed(recorder, params):
    arn = params["Arn"]
    job_id = str(uuid.uuid4())
    with recorder.lock:
        recorder.jobs[job_id] = {
            "arn": arn,
            "granularity": params.get("Granularity", "SERVICE_LEVEL"),
            "created": now_utc(),
        }
    return query_response("GenerateServiceLastAccessedDetails", f"<JobId>{job_id}</JobId>")


def get_last_accessed(recorder, params):
    job = recorder.jobs.get(params.get("JobId"))
    if job is None:
        return query_error("NoSuchEntity", f"Job {params.get('JobId')} not found", 404)
    arn = job["arn"]
    docs, _ = principal_policies(arn)
    namespaces = set()
    for doc in docs:
        statements = json.loads(doc).get("Statement", [])
        for st in statements if isinstance(statements, list) else [statements]:
            acts = st.get("Action", [])
            for act in [acts] if isinstance(acts, str) else acts:
                namespaces.add(act.split(":")[0].lower() if act != "*" else "*")
    used = {}
    for e in recorder.snapshot():
        ident = e.get("userIdentity") or {}
        caller = (ident.get("sessionContext") or {}).get("sessionIssuer", {}).get("arn") or ident.get("arn")
        if caller != arn or e.get("errorCode"):
            continue
        ns = e["eventSource"].split(".")[0]
        entry = used.setdefault(ns, {"last": None, "region": None, "actions": {}})
        t = e["eventTime"]
        if entry["last"] is None or t > entry["last"]:
            entry["last"], entry["region"] = t, e.get("awsRegion")
        action = f"{ns}:{e['eventName']}"
        if action not in entry["actions"] or t > entry["actions"][action][0]:
            entry["actions"][action] = (t, e.get("awsRegion"))
    if "*" in namespaces:
        namespaces.discard("*")
        namespaces |= set(used)
    members = []
    for ns in sorted(namespaces):
        u = used.get(ns)
        parts = [f"<ServiceName>{SERVICE_NAMES.get(ns, ns)}</ServiceName>", f"<ServiceNamespace>{ns}</ServiceNamespace>"]
        if u:
            parts += [
                f"<LastAuthenticated>{u['last']}</LastAuthenticated>",
                f"<LastAuthenticatedEntity>{arn}</LastAuthenticatedEntity>",
                f"<LastAuthenticatedRegion>{u['region']}</LastAuthenticatedRegion>",
                "<TotalAuthenticatedEntities>1</TotalAuthenticatedEntities>",
            ]
        else:
            parts.append("<TotalAuthenticatedEntities>0</TotalAuthenticatedEntities>")
        if job["granularity"] == "ACTION_LEVEL" and u:
            tracked = "".join(
                f"<member><ActionName>{a.split(':')[1]}</ActionName><LastAccessedTime>{t}</LastAccessedTime>"
                f"<LastAccessedEntity>{arn}</LastAccessedEntity><LastAccessedRegion>{r}</LastAccessedRegion></member>"
                for a, (t, r) in sorted(u["actions"].items())
            )
            parts.append(f"<TrackedActionsLastAccessed>{tracked}</TrackedActionsLastAccessed>")
        members.append(f"<member>{''.join(parts)}</member>")
    created = iso(job["created"])
    return query_response(
        "GetServiceLastAccessedDetails",
        f"<JobStatus>COMPLETED</JobStatus><JobType>{job['granularity']}</JobType>"
        f"<JobCreationDate>{created}</JobCreationDate><JobCompletionDate>{created}</JobCompletionDate>"
        f"<ServicesLastAccessed>{''.join(members)}</ServicesLastAccessed><IsTruncated>false</IsTruncated>",
    )


def query_response(operation, inner):
    body = (
        f'<{operation}Response xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<{operation}Result>{inner}</{operation}Result>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{operation}Response>"
    )
    return 200, [("Content-Type", "text/xml")], body.encode()


def query_error(code, message, status=400):
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>{xml.sax.saxutils.escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return status, [("Content-Type", "text/xml")], body.encode()


def json_response(status, doc, error_code=None):
    headers = [("Content-Type", "application/x-amz-json-1.1")]
    if error_code:
        headers.append(("x-amzn-ErrorType", error_code))
    return status, headers, json.dumps(doc).encode()


# --- the middleware ---------------------------------------------------------------------------

STATUS_TEXT = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


# --- Smithy RPC v2 CBOR (CloudWatch) ----------------------------------------------------------

def cbor_decode(data):
    """Decodes one CBOR item (RFC 8949: the subset Smithy uses, definite or indefinite length)."""
    import struct

    def item(i):
        head = data[i]
        major, info = head >> 5, head & 0x1F
        i += 1
        if major == 7:
            if info == 20:
                return False, i
            if info == 21:
                return True, i
            if info in (22, 23):
                return None, i
            if info == 25:
                return struct.unpack(">e", data[i:i + 2])[0], i + 2
            if info == 26:
                return struct.unpack(">f", data[i:i + 4])[0], i + 4
            if info == 27:
                return struct.unpack(">d", data[i:i + 8])[0], i + 8
            raise ValueError(f"CBOR simple value {info}")
        if info < 24:
            length = info
        elif info in (24, 25, 26, 27):
            size = 1 << (info - 24)
            length = int.from_bytes(data[i:i + size], "big")
            i += size
        elif info == 31:
            length = None
        else:
            raise ValueError(f"CBOR additional info {info}")
        if major == 0:
            return length, i
        if major == 1:
            return -1 - length, i
        if major in (2, 3):
            if length is None:
                chunks = []
                while data[i] != 0xFF:
                    chunk, i = item(i)
                    chunks.append(chunk)
                return (b"" if major == 2 else "").join(chunks), i + 1
            raw = data[i:i + length]
            return (bytes(raw) if major == 2 else raw.decode()), i + length
        if major == 4:
            out = []
            while (len(out) < length) if length is not None else data[i] != 0xFF:
                value, i = item(i)
                out.append(value)
            return out, (i if length is not None else i + 1)
        if major == 5:
            out = {}
            while (len(out) < length) if length is not None else data[i] != 0xFF:
                key, i = item(i)
                out[key], i = item(i)
            return out, (i if length is not None else i + 1)
        if major == 6:
            value, i = item(i)
            return (datetime.datetime.fromtimestamp(value, datetime.timezone.utc) if length == 1 else value), i
        raise ValueError(f"CBOR major type {major}")

    value, _ = item(0)
    return value


def cbor_encode(value):
    import struct

    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        raise ValueError("CBOR length")

    if value is None:
        return b"\xf6"
    if value is True or value is False:
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode()
        return head(3, len(raw)) + raw
    if isinstance(value, datetime.datetime):
        return b"\xc1" + cbor_encode(value.timestamp())
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(cbor_encode(v) for v in value)
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(cbor_encode(k) + cbor_encode(v) for k, v in value.items())
    raise ValueError(f"cannot encode {type(value)}")


def cloudwatch_cbor(path, body, region):
    """Answers a Smithy RPC v2 CBOR CloudWatch call: (status, headers, body)."""
    from moto.cloudwatch.models import cloudwatch_backends

    operation = path.rsplit("/", 1)[-1]
    headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
    if operation != "GetMetricStatistics":
        return 501, headers, cbor_encode({"__type": "NotImplemented", "message": f"{operation} over CBOR"})
    request = cbor_decode(body) if body else {}
    backend = cloudwatch_backends[DEFAULT_ACCOUNT_ID][region]
    dimensions = [{"Name": d["Name"], "Value": d["Value"]} for d in request.get("Dimensions", [])]
    # moto keeps metric times as naive UTC.
    naive = lambda t: t.astimezone(datetime.timezone.utc).replace(tzinfo=None)  # noqa: E731
    statistics = backend.get_metric_statistics(
        request["Namespace"], request["MetricName"], naive(request["StartTime"]), naive(request["EndTime"]),
        int(request["Period"]), request.get("Statistics", []), dimensions, request.get("Unit"))
    datapoints = []
    for stat in statistics:
        point = {"Timestamp": stat.timestamp.replace(tzinfo=stat.timestamp.tzinfo or datetime.timezone.utc)}
        for name in request.get("Statistics", []):
            value = stat.get_statistics_for_type(name)
            if value is not None:
                point[name] = float(value)
        if stat.unit:
            point["Unit"] = stat.unit
        datapoints.append(point)
    return 200, headers, cbor_encode({"Label": request["MetricName"], "Datapoints": datapoints})


def described_region(environ):
    """The region in a request's SigV4 credential scope, if signed."""
    found = re.search(r"Credential=[^/]+/\d+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1) if found else None


class Extension:
    def __init__(self, app, recorder):
        self.app = app
        self.recorder = recorder

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        path = environ.get("PATH_INFO", "")
        if path.startswith("/whittle-emulator/"):
            status, headers, out = self.control(environ["REQUEST_METHOD"], path, body)
        elif path.startswith("/service/GraniteServiceVersion20100801/operation/"):
            region = (described_region(environ) or "us-east-1")
            try:
                status, headers, out = cloudwatch_cbor(path, body, region)
            except Exception as error:  # a malformed request is the client's error
                status, headers, out = 400, [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")], cbor_encode({"__type": "ValidationError", "message": str(error)})
        else:
            if path == "/moto-api/reset":
                self.recorder.reset()
                athena_engine.reset()
            described = describe_request(environ, body)
            S3_DENIAL.message = None
            CURRENT.request = (described[2], described[3], described[4],
                               parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)) if described else None
            CURRENT.body = body
            try:
                status, headers, out = self.handle(environ, body, described)
            finally:
                CURRENT.request = None
                CURRENT.body = None
            if described:
                access_key, region, service, action, params = described
                code, message = error_of(status, out)
                if status == 403 and S3_DENIAL.message and code in ("HTTP403", "AccessDenied"):
                    code, message = "AccessDenied", S3_DENIAL.message
                self.recorder.add(make_event(
                    identity_for(access_key), region, service, action, params, status, code, message,
                    environ.get("REMOTE_ADDR", "127.0.0.1"), environ.get("HTTP_USER_AGENT", ""),
                ))
        start_response(f"{status} {STATUS_TEXT.get(status, 'Status')}", headers + [("Content-Length", str(len(out)))])
        return [out]

    def handle(self, environ, body, described):
        if described:
            access_key, region, service, action, params = described
            fault = self.recorder.take_fault(service, action)
            if fault and fault["delay_seconds"]:
                time.sleep(fault["delay_seconds"])
            if fault and fault["code"]:
                if environ.get("HTTP_X_AMZ_TARGET"):
                    return json_response(fault["status"], {"__type": fault["code"], "message": fault["message"]}, fault["code"])
                return query_error(fault["code"], fault["message"], fault["status"])
            intercepted = (service == "cloudtrail" and action == "LookupEvents") or (
                service == "iam" and action in ("SimulatePrincipalPolicy", "SimulateCustomPolicy",
                                                "GenerateServiceLastAccessedDetails", "GetServiceLastAccessedDetails"))
            if intercepted:
                refused = authorize_intercepted(environ, body, described)
                if refused:
                    return refused
            if service == "athena" and action in ATHENA_ACTIONS:
                handled = athena_call(environ, body, described)
                if handled:
                    return handled
            if service == "cloudtrail" and action == "LookupEvents":
                account_id = identity_for(access_key)["accountId"]
                # The request as sent (the recorded parameters are camelCased for CloudTrail).
                request = json.loads(body or b"{}")
                status, doc = lookup_events(self.recorder, request, account_id, region)
                return json_response(status, doc, doc.get("__type"))
            if service == "iam" and action in ("SimulatePrincipalPolicy", "SimulateCustomPolicy",
                                               "GenerateServiceLastAccessedDetails", "GetServiceLastAccessedDetails"):
                raw = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                try:
                    if action == "SimulatePrincipalPolicy":
                        return simulate(raw | {"PolicySourceArn": raw.get("PolicySourceArn", [""])[0]}, custom=False)
                    if action == "SimulateCustomPolicy":
                        return simulate(raw, custom=True)
                    flat = {k: v[0] for k, v in raw.items()}
                    if action == "GenerateServiceLastAccessedDetails":
                        return generate_last_accessed(self.recorder, flat)
                    return get_last_accessed(self.recorder, flat)
                except Exception as error:  # an unknown entity, a malformed document
                    code = "NoSuchEntity" if "not found" in str(error).lower() or "cannot be found" in str(error).lower() else "InvalidInput"
                    return query_error(code, str(error), 404 if code == "NoSuchEntity" else 400)
        status, headers, out = self.call_moto(environ)
        json_protocol = environ.get("HTTP_X_AMZ_TARGET") or (described and described[2] in REST_JSON_SERVICES)
        if described and status in (401, 403) and json_protocol and out.lstrip().startswith(b"<"):
            # moto answers auth failures as query-protocol XML even for JSON and REST-JSON
            # services; the SDK cannot read a code from that, so reshape it as the JSON
            # protocols do (the code in `__type` and in the x-amzn-ErrorType header).
            code, message = error_of(status, out)
            code = JSON_ERROR_CODES.get(code, code)
            return json_response(status, {"__type": code, "message": message or code}, code)
        if described and status in (401, 403) and described[2] not in ("s3",) and b"<Errors><Error>" in out:
            # moto wraps query-protocol errors (IAM, STS) in <Errors>, which the SDK's awsQuery
            # parser does not read (it then sees a bare 403 without the message naming the
            # action); AWS answers <ErrorResponse><Error>…</Error><RequestId/></ErrorResponse>.
            out = out.replace(b"<Errors><Error>", b"<Error>").replace(b"</Error></Errors>", b"</Error><RequestId>" + str(uuid.uuid4()).encode() + b"</RequestId>")
            return status, headers, out
        return status, headers, out

    def call_moto(self, environ):
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = [(k, v) for k, v in headers if k.lower() != "content-length"]

        chunks = self.app(environ, start_response)
        try:
            out = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return captured["status"], captured["headers"], out

    def control(self, method, path, body):
        action = path[len("/whittle-emulator/"):].strip("/")
        doc = json.loads(body or b"null")
        if action == "events" and method == "GET":
            return json_response(200, {"Records": self.recorder.snapshot()})
        if action == "events" and method == "POST":
            records = doc.get("Records", []) if isinstance(doc, dict) else doc
            for record in records:
                record.setdefault("eventID", str(uuid.uuid4()))
                record.setdefault("eventTime", iso(now_utc()))
                record.setdefault("eventVersion", "1.08")
                record.setdefault("managementEvent", record.get("eventCategory", "Management") == "Management")
                record.setdefault("recipientAccountId", (record.get("userIdentity") or {}).get("accountId", DEFAULT_ACCOUNT_ID))
                self.recorder.add(record)
            return json_response(200, {"injected": len(records)})
        if action == "deliver" and method == "POST":
            return json_response(200, {"delivered": deliver(self.recorder)})
        if action == "faults" and method == "POST":
            delay = float(doc.get("delay_seconds", 0))
            fault = {
                "service": doc.get("service", "*"),
                "action": doc.get("action", "*"),
                "status": int(doc.get("status", 400)),
                # A delay alone holds the call, then answers it normally.
                "code": doc.get("code", None if delay else "ThrottlingException"),
                "delay_seconds": delay,
                "message": doc.get("message", "Rate exceeded"),
                "count": int(doc.get("count", 1)),
            }
            with self.recorder.lock:
                self.recorder.faults.append(fault)
            return json_response(200, {"fault": fault})
        if action == "seed-iam" and method == "POST":
            try:
                return json_response(200, seed_iam(doc))
            except Exception as error:  # a malformed document, an unknown policy ARN
                return json_response(400, {"error": str(error)})
        if action == "native-rotation" and method == "POST":
            NATIVE_OUTCOMES[doc["secret"]] = doc.get("outcome", "succeed")
            return json_response(200, {"seeded": doc})
        if action == "visibility-lag" and method == "GET":
            return json_response(200, self.recorder.lags())
        if action == "visibility-lag" and method == "POST":
            # Either key may be left out (that lag is kept); applies to events recorded from now.
            values = [(doc or {}).get(k) for k in ("lookup_seconds", "delivery_seconds")]
            try:
                lookup, delivery = (None if v is None else float(v) for v in values)
            except (TypeError, ValueError):
                lookup = delivery = -1.0
            if any(v is not None and not 0 <= v < float("inf") for v in (lookup, delivery)):
                return json_response(400, {"error": "lookup_seconds and delivery_seconds must be numbers >= 0"})
            self.recorder.set_lags(lookup, delivery)
            return json_response(200, self.recorder.lags())
        if action == "role-propagation" and method == "POST":
            try:
                seconds = float((doc or {}).get("seconds"))
            except (TypeError, ValueError):
                seconds = -1.0
            if not 0 <= seconds < float("inf"):
                return json_response(400, {"error": "seconds must be a number >= 0"})
            ROLE_PROPAGATION["seconds"] = seconds
            return json_response(200, ROLE_PROPAGATION)
        if action == "reset" and method == "POST":
            ROLE_PROPAGATION["seconds"] = _start_propagation()
            self.recorder.reset()
            athena_engine.reset()
            return json_response(200, {"reset": True})
        return json_response(404, {"error": f"unknown control {method} {path}"})


ATHENA_ACTIONS = ("StartQueryExecution", "GetQueryExecution", "GetQueryResults", "StopQueryExecution")


def athena_seeded(account_id, region):
    """Whether results were seeded through moto's API for this account and region: the fault
    tests seed them, and then moto answers the query as before (seeded results win)."""
    from moto.athena.models import athena_backends
    try:
        return bool(athena_backends[account_id][region].query_results_queue)
    except KeyError:
        return False


def athena_call(environ, body, described):
    """Answers an Athena call with athena_engine (the SQL is executed), or None to let moto
    answer it: a query started while seeded results wait, and every call about such a query."""
    access_key, region, service, action, params = described
    account_id = identity_for(access_key)["accountId"]
    request = json.loads(body or b"{}")
    if action == "StartQueryExecution":
        if athena_seeded(account_id, region):
            return None
    elif not athena_engine.owns(request.get("QueryExecutionId", "")):
        return None
    refused = authorize_intercepted(environ, body, described)
    if refused:
        return refused
    if action == "StartQueryExecution":
        status, doc = athena_engine.start(account_id, region, request, athena_workgroup_output(account_id, region, request.get("WorkGroup")))
    elif action == "GetQueryExecution":
        status, doc = 200, athena_engine.describe(request["QueryExecutionId"])
    elif action == "GetQueryResults":
        status, doc = athena_engine.results(request["QueryExecutionId"], request)
    else:
        status, doc = athena_engine.stop(request["QueryExecutionId"])
    return json_response(status, doc, doc.get("__type"))


def athena_workgroup_output(account_id, region, name):
    """The output location configured on a workgroup in moto, if any."""
    from moto.athena.models import athena_backends
    try:
        workgroup = athena_backends[account_id][region].work_groups.get(name or "primary")
        config = getattr(workgroup, "configuration", None) or {}
        return (config.get("ResultConfiguration") or {}).get("OutputLocation")
    except (KeyError, AttributeError):
        return None


def authorize_intercepted(environ, body, described):
    """In auth mode, checks a call the extension answers itself (moto never sees it) as moto
    checks the calls it answers: the signature, then the caller's policies. None when allowed,
    else the error response in the call's protocol."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import IAMRequest

    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        ActionAuthenticatorMixin.request_count += 1
        return None
    access_key, region, service, action, params = described
    headers = {"-".join(w.capitalize() for w in k[5:].split("_")): v for k, v in environ.items() if k.startswith("HTTP_")}
    headers["Authorization"] = environ.get("HTTP_AUTHORIZATION", "")
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if environ.get(key):
            headers[name] = environ[key]
    path = environ.get("PATH_INFO", "/") + (("?" + environ["QUERY_STRING"]) if environ.get("QUERY_STRING") else "")
    json_protocol = bool(environ.get("HTTP_X_AMZ_TARGET"))
    try:
        request = IAMRequest(account_id=identity_for(access_key)["accountId"], method=environ["REQUEST_METHOD"],
                             path=path, data=params, body=body, headers=headers, action=action)
        request.check_signature()
        request.check_action_permitted("*")
    except Exception as error:  # moto's auth errors are HTTPExceptions carrying the XML body
        status = getattr(error, "code", 403)
        code, message = error_of(status, str(getattr(error, "description", "")).encode())
        if json_protocol:
            code = JSON_ERROR_CODES.get(code, code)
            return json_response(status, {"__type": code, "message": message or code}, code)
        return query_error(code, message or code, status)
    return None


def patch_secretsmanager():
    """Moving AWSCURRENT must also move moto's default version (GetSecretValue without a stage
    and the AWSPREVIOUS bookkeeping of a later PutSecretValue both follow it)."""
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):
        result = original(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].set_default_version_id(move_to_version_id)
        return result

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage


# Secret name -> the outcome of its next RotateSecret ("succeed" or "fail").
NATIVE_OUTCOMES = {}


def patch_native_rotation():
    """RotateSecret of a secret with a seeded outcome behaves as its rotation Lambda would."""
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.rotate_secret

    def rotate_secret(self, secret_id, client_request_token=None, rotation_lambda_arn=None,
                      rotation_rules=None, rotate_immediately=True):
        outcome = NATIVE_OUTCOMES.pop(secret_id, None)
        if outcome is None:
            return original(self, secret_id, client_request_token, rotation_lambda_arn,
                            rotation_rules, rotate_immediately)
        secret = self.secrets[secret_id]
        token = client_request_token or str(uuid.uuid4())
        current = next(v for v, d in secret.versions.items() if "AWSCURRENT" in d["version_stages"])
        # createSecret: the new value under AWSPENDING.
        value = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(32))
        self.put_secret_value(secret_id, value, None, token, ["AWSPENDING"])
        if outcome == "succeed":
            # finishSecret: AWSCURRENT moves to it, AWSPENDING goes.
            self.update_secret_version_stage(secret_id, "AWSCURRENT", current, token)
            self.update_secret_version_stage(secret_id, "AWSPENDING", token, None)
        secret.last_rotation_date = int(time.time())
        secret.rotation_requested = True
        if rotation_rules and rotation_rules.get("AutomaticallyAfterDays"):
            secret.auto_rotate_after_days = rotation_rules["AutomaticallyAfterDays"]
            secret.rotation_enabled = True
        return secret.to_short_dict()

    SecretsManagerBackend.rotate_secret = rotate_secret


# --- auth mode: IAM's policy evaluation --------------------------------------------------------
#
# moto 5.2.5 checks identity policies against the resource "*" for every service but IAM roles,
# sts:AssumeRole and S3, so a statement scoped to an ARN never matches there; it evaluates only
# StringEquals conditions, treats a key missing from the request as a match, and denies outright
# when an Allow statement's condition fails. whittle's own policy (`whittle self-policy`) is
# scoped by ARNs and conditions, so auth mode evaluates identity policies and permissions
# boundaries here instead, as IAM does ("Policy evaluation logic"; "IAM JSON policy elements:
# Condition operators"): the request's real resource ARN for the services whittle calls
# (request_resource), a request context with the condition keys whittle's policies use
# (request_context), every condition operator but IP and binary ones, IAM's rules for missing
# keys, and an explicit Deny in any policy winning. Role trust policies stay moto's.

# The request being handled by this thread: (service, action, params, query), for the check.
CURRENT = threading.local()


def _listed(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _glob(pattern, value, fold=False):
    """IAM's wildcards: `*` any run of characters, `?` one character; nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if fold else re.DOTALL) is not None


def _arn_like(pattern, value):
    """ArnLike: the six colon-separated parts matched one by one (a part's wildcards stay in it)."""
    p, v = pattern.split(":", 5), value.split(":", 5)
    return len(p) == len(v) == 6 and all(_glob(a, b) for a, b in zip(p, v))


def _when(text):
    text = str(text)
    if re.fullmatch(r"-?\d+", text):
        return datetime.datetime.fromtimestamp(int(text), datetime.timezone.utc)
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _compare(operator, value, expected):
    """One context value against one policy value, under a positive operator."""
    expected = str(expected).lower() if isinstance(expected, bool) else str(expected)
    if operator == "StringEquals":
        return value == expected
    if operator == "StringEqualsIgnoreCase":
        return value.lower() == expected.lower()
    if operator == "StringLike":
        return _glob(expected, value)
    if operator in ("ArnEquals", "ArnLike"):
        return _arn_like(expected, value)
    if operator == "Bool":
        return value.lower() == expected.lower()
    if operator.startswith("Numeric"):
        a, b = float(value), float(expected)
        return {"NumericEquals": a == b, "NumericLessThan": a < b, "NumericLessThanEquals": a <= b,
                "NumericGreaterThan": a > b, "NumericGreaterThanEquals": a >= b}[operator]
    if operator.startswith("Date"):
        a, b = _when(value), _when(expected)
        return {"DateEquals": a == b, "DateLessThan": a < b, "DateLessThanEquals": a <= b,
                "DateGreaterThan": a > b, "DateGreaterThanEquals": a >= b}[operator]
    raise ValueError(f"the emulator does not evaluate the condition operator {operator}")


NEGATED = {
    "StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike", "NumericNotEquals": "NumericEquals", "DateNotEquals": "DateEquals",
    "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike",
}


def condition_holds(operator, key, expected, context):
    """One operator/key pair of a Condition block, with IAM's rules for a key the request lacks."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    base = base[: -len("IfExists")] if if_exists else base
    present = context.get(key.lower())
    values = _listed(present)
    expected = _listed(expected)
    if base == "Null":
        absent = not values
        return any(str(e).lower() == ("true" if absent else "false") for e in expected)
    negated = base in NEGATED
    positive = NEGATED.get(base, base)
    if not values:
        # Missing: ...IfExists passes; ForAllValues is vacuously true; ForAnyValue has nothing
        # to match; a plain negated operator is true, a plain positive one false.
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return negated

    def one(value):
        matched = any(_compare(positive, str(value), e) for e in expected)
        return not matched if negated else matched

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    if qualifier == "ForAnyValue":
        return any(one(v) for v in values)
    matched = any(any(_compare(positive, str(v), e) for e in expected) for v in values)
    return not matched if negated else matched


def statement_applies(statement, action, resource, context):
    if "Action" in statement:
        if not any(_glob(a, action, fold=True) for a in _listed(statement["Action"])):
            return False
    elif any(_glob(a, action, fold=True) for a in _listed(statement.get("NotAction"))):
        return False
    if "Resource" in statement:
        if not any(_glob(r, resource) for r in _listed(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(_glob(r, resource) for r in _listed(statement["NotResource"])):
            return False
    for operator, keys in (statement.get("Condition") or {}).items():
        for key, expected in keys.items():
            if not condition_holds(operator, key, expected, context):
                return False
    return True


def policy_verdict(documents, action, resource, context):
    """"deny" (an explicit Deny applies), "allow" (an Allow applies and no Deny), or None."""
    verdict = None
    for document in documents:
        if isinstance(document, str):
            document = json.loads(document)
        for statement in _listed(document.get("Statement")):
            if statement_applies(statement, action, resource, context):
                if statement.get("Effect") == "Deny":
                    return "deny"
                verdict = "allow"
    return verdict


def _boundary_allows(document, action, resource, context=None):
    """A permissions boundary's verdict: "deny", "allow" or None (no statement applies)."""
    return policy_verdict([document], action, resource, context or base_context())


def _document_of(policy):
    """The JSON text of what moto's collect_policies returns (a managed policy, an inline one)."""
    if isinstance(policy, str):
        return policy
    if isinstance(policy, dict):
        return policy["policy_document"]
    return next(v.document for v in policy.versions if v.is_default)


def base_context():
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"aws:currenttime": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "aws:epochtime": str(int(now.timestamp()))}


def _param(params, *names):
    """A request parameter by name; the recording camelCases them (`secretId`), so any case."""
    lowered = {str(k).lower(): v for k, v in params.items()}
    for name in names:
        value = lowered.get(name.lower())
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            return value
    return None


def request_resource(account_id, region, service, action, params, resource):
    """The ARN AWS authorizes a request of whittle's services against, where moto says "*"."""
    if resource != "*":
        return resource
    partition = "aws"
    try:
        if service == "iam":
            from moto.iam.models import iam_backends
            iam = iam_backends[account_id][partition]
            explicit = _param(params, "PolicyArn", "Arn")
            if explicit:
                return explicit
            if action == "CreatePolicy" and _param(params, "PolicyName"):
                path = _param(params, "Path") or "/"
                return f"arn:{partition}:iam::{account_id}:policy{path}{_param(params, 'PolicyName')}"
            role = _param(params, "RoleName")
            if role:
                # A role that does not exist (yet: CreateRole, or a GetRole that will answer
                # NoSuchEntity) is authorized against the ARN it would have.
                try:
                    return iam.get_role(role).arn
                except Exception:
                    return f"arn:{partition}:iam::{account_id}:role{_param(params, 'Path') or '/'}{role}"
            user = _param(params, "UserName")
            if not user and _param(params, "AccessKeyId"):
                key_id = _param(params, "AccessKeyId")
                user = next((u.name for u in iam.users.values()
                             if any(k.access_key_id == key_id for k in u.access_keys)), None)
            if user:
                try:
                    return iam.get_user(user).arn
                except Exception:
                    return f"arn:{partition}:iam::{account_id}:user/{user}"
        if service == "secretsmanager" and _param(params, "SecretId"):
            from moto.secretsmanager.models import secretsmanager_backends
            secret_id = _param(params, "SecretId")
            found = secretsmanager_backends[account_id][region].secrets.get(secret_id)
            if found is not None:
                return found.arn
            return secret_id if secret_id.startswith("arn:") else f"arn:{partition}:secretsmanager:{region}:{account_id}:secret:{secret_id}"
        if service == "ssm" and _param(params, "Name"):
            name = _param(params, "Name")
            if name.startswith("arn:"):
                return name
            name = name.split(":", 1)[0]  # a `name:label` or `name:version` selector
            return f"arn:{partition}:ssm:{region}:{account_id}:parameter{name if name.startswith('/') else '/' + name}"
        if service == "kms" and _param(params, "KeyId"):
            from moto.kms.models import kms_backends
            try:
                return kms_backends[account_id][region].describe_key(_param(params, "KeyId")).arn
            except Exception:
                return "*"
        if service == "lambda" and _param(params, "functionName"):
            name = _param(params, "functionName")
            return name if name.startswith("arn:") else f"arn:{partition}:lambda:{region}:{account_id}:function:{name}"
        if service == "athena" and action in ("StartQueryExecution", "GetQueryExecution", "GetQueryResults", "StopQueryExecution"):
            workgroup = _param(params, "WorkGroup")
            if not workgroup and athena_engine.owns(_param(params, "QueryExecutionId") or ""):
                workgroup = athena_engine.EXECUTIONS[_param(params, "QueryExecutionId")]["workgroup"]
            if not workgroup and _param(params, "QueryExecutionId"):
                from moto.athena.models import athena_backends
                execution = athena_backends[account_id][region].executions.get(_param(params, "QueryExecutionId"))
                workgroup = getattr(getattr(execution, "workgroup", None), "name", None) or getattr(execution, "workgroup", None)
            return f"arn:{partition}:athena:{region}:{account_id}:workgroup/{workgroup if isinstance(workgroup, str) else 'primary'}"
    except Exception:
        return resource
    return resource


def request_context(account_id, region, service, action, params, query, resource):
    """The condition keys of a request that whittle's policies use (besides the time):
    iam:ResourceTag/* and aws:ResourceTag/* of a role, iam:PermissionsBoundary, iam:PolicyARN,
    s3:prefix and s3:delimiter of a listing, kms:ResourceAliases and kms:RequestAlias."""
    context = base_context()
    try:
        if ":iam::" in resource and ":role/" in resource:
            from moto.iam.models import iam_backends
            role = iam_backends[account_id]["aws"].get_role_by_arn(resource)
            # moto keeps a role's tags as a list of {"Key", "Value"} (a dict of them elsewhere).
            tags = role.tags.values() if isinstance(role.tags, dict) else (role.tags or [])
            for tag in tags:
                key, value = tag["Key"], tag["Value"]
                context[f"iam:resourcetag/{key}".lower()] = value
                context[f"aws:resourcetag/{key}".lower()] = value
    except Exception:
        pass
    if service == "iam":
        if _param(params, "PermissionsBoundary"):
            context["iam:permissionsboundary"] = _param(params, "PermissionsBoundary")
        if _param(params, "PolicyArn") and action in ("AttachRolePolicy", "DetachRolePolicy", "AttachUserPolicy", "DetachUserPolicy"):
            context["iam:policyarn"] = _param(params, "PolicyArn")
    if service == "s3":
        for key in ("prefix", "delimiter"):
            if query.get(key):
                context[f"s3:{key}"] = query[key][0]
    if service == "kms" and resource.startswith("arn:") and ":key/" in resource:
        try:
            from moto.kms.models import kms_backends
            key = kms_backends[account_id][region].keys[resource.split(":key/")[1]]
            context["kms:resourcealiases"] = sorted(key.aliases)
        except Exception:
            pass
        if str(_param(params, "KeyId") or "").startswith("alias/"):
            context["kms:requestalias"] = _param(params, "KeyId")
    return context


def patch_policy_evaluation():
    """Auth mode evaluates identity policies and permissions boundaries as IAM does (above)."""
    from moto.core.exceptions import AccessDeniedError
    from moto.iam import access_control

    def check_action_permitted(self, resource):
        if self._action == "sts:GetCallerIdentity":  # needs no permission, even under a Deny
            return
        current = getattr(CURRENT, "request", None) or (None, None, {}, {})
        service, action, params, query = current
        action = action or self._action.split(":", 1)[1]
        resource = request_resource(self.account_id, self._region, self._service, action, params, resource)
        self._whittle_resource = resource
        self._whittle_boundary = False
        self._whittle_explicit = False
        context = request_context(self.account_id, self._region, self._service, action, params, query, resource)
        documents = [_document_of(p) for p in self._access_key.collect_policies()]
        verdict = policy_verdict(documents, self._action, resource, context)
        if verdict == "deny":
            self._whittle_explicit = True
            self._raise_access_denied()
        if verdict != "allow":
            self._raise_access_denied()
        if self._is_assuming_role_operation(resource) and not self._check_role_trust_relationship(resource):
            self._raise_access_denied()
        key = self._access_key
        backend = key.backend
        arn = None
        try:
            if hasattr(key, "_owner_role_name"):
                arn = backend.get_role(key._owner_role_name).permissions_boundary_arn
            elif hasattr(key, "_owner_user_name"):
                arn = getattr(backend.get_user(key._owner_user_name), "permissions_boundary_arn", None)
        except Exception:
            arn = None
        if not arn:
            return
        document = _document_of(backend.get_policy(arn))
        if policy_verdict([document], self._action, resource, context) != "allow":
            self._whittle_boundary = True
            self._raise_access_denied()

    access_control.IAMRequestBase.check_action_permitted = check_action_permitted

    original_request = access_control.IAMRequestBase._create_aws_request

    def _create_aws_request(self):
        # moto rebuilds a form-encoded body from its parsed fields to check the signature
        # (werkzeug has consumed the stream), encoding a space as `+` where the SDK sent
        # `%20`: a correctly signed IAM call with a space in a policy document failed with
        # SignatureDoesNotMatch. For REST-JSON services (Lambda) it passes the request's
        # headers as the data of a GET, so every signed ListFunctions failed. AWS checks the
        # signature over the bytes sent; so does this (S3 signs its payload hash in a header
        # and JSON-protocol bodies reach moto unchanged: both are left to moto).
        request = original_request(self)
        body = getattr(CURRENT, "body", None)
        if (body is not None and not self._headers.get("X-Amz-Target")
                and not isinstance(self, access_control.S3IAMRequest)):
            request.data = body
        return request

    access_control.IAMRequestBase._create_aws_request = _create_aws_request

    def _raise_access_denied(self):
        # AWS names the action, the resource and why (IAM User Guide, "Troubleshoot access
        # denied error messages"); whittle reports the action from this message.
        raise AccessDeniedError(user_arn=self._access_key.arn, action=denial_text(self))

    access_control.IAMRequest._raise_access_denied = _raise_access_denied


def denial_text(request):
    """`ACTION on resource: RESOURCE because …`, after `User: ARN is not authorized to perform: `."""
    action = request._action
    resource = getattr(request, "_whittle_resource", "*")
    if getattr(request, "_whittle_explicit", False):
        why = "with an explicit deny in an identity-based policy"
    elif getattr(request, "_whittle_boundary", False):
        why = f"because no permissions boundary allows the {action} action"
    else:
        why = f"because no identity-based policy allows the {action} action"
    return f"{action} on resource: {resource} {why}"


# The message of the S3 denial raised while the current request was handled (same thread).
S3_DENIAL = threading.local()


def patch_s3_authorization():
    """In auth mode moto checks an S3 request against the action AWS checks (s3_call), and a
    denial names it as AWS does.

    moto 5.2.5 picks the action from its ACTION_MAP, which has wrong keys (`public_access_block`
    for `?publicAccessBlock`, so GetPublicAccessBlock checks s3:ListBucket and
    DeletePublicAccessBlock s3:DeleteBucket), misses sub-resources (encryption, replication,
    ownershipControls, object-lock, object tagging on DELETE, …, all checked as s3:ListBucket,
    s3:CreateBucket or s3:DeleteObject), checks HeadBucket as the non-existent s3:HeadBucket, and
    denies every S3 call with a bare "Access Denied". The action is set only for the check:
    moto's own dispatch and response serialisation keep the Action value they had."""
    from moto.iam import access_control
    from moto.s3.exceptions import BucketAccessDeniedError, S3AccessDeniedError, S3ClientError
    from moto.s3.responses import S3Response

    original = S3Response._authenticate_and_authorize_s3_action

    def _authenticate_and_authorize_s3_action(self, bucket_name=None, key_name=None):
        action = None
        if bucket_name:
            query = parse_qs(urlparse(self.uri).query, keep_blank_values=True)
            headers = {k.lower(): v for k, v in dict(self.headers).items()}
            action = s3_call(self.method, bool(key_name), query, headers)[1]
        if not action:
            return original(self, bucket_name=bucket_name, key_name=key_name)
        had, previous = "Action" in self.data, self.data.get("Action")
        self.data["Action"] = action.split(":", 1)[1]
        try:
            return original(self, bucket_name=bucket_name, key_name=key_name)
        finally:
            if had:
                self.data["Action"] = previous
            else:
                self.data.pop("Action", None)

    S3Response._authenticate_and_authorize_s3_action = _authenticate_and_authorize_s3_action

    class S3ActionDenied(BucketAccessDeniedError):
        def __init__(self, bucket, message):
            S3ClientError.__init__(self, "AccessDenied", message)
            self.bucket_name = bucket

    def _raise_access_denied(self):
        action = self._action
        resource = getattr(self, "_whittle_resource", "*")
        text = denial_text(self).replace(f"on resource: {resource}", f'on resource: "{resource}"', 1)
        message = f"User: {self._access_key.arn} is not authorized to perform: {text}"
        # A HEAD answer has no body to carry the message; the recording takes it from here.
        S3_DENIAL.message = message
        if "BucketName" in self._data:
            raise S3ActionDenied(self._data["BucketName"], message)
        error = S3AccessDeniedError()
        error.message = message
        raise error

    access_control.S3IAMRequest._raise_access_denied = _raise_access_denied


def patch_inactive_access_keys():
    """An access key whose status is Inactive must not authenticate a request, as in AWS."""
    from moto.iam import access_control

    original = access_control.IAMUserAccessKey.__init__

    def __init__(self, account_id, partition, access_key_id, headers):
        original(self, account_id, partition, access_key_id, headers)
        for user in self.backend.list_users("/", None, None):
            for key in user.access_keys:
                if key.access_key_id == access_key_id and key.status == "Inactive":
                    raise access_control.CreateAccessKeyFailure(reason="InvalidId")

    access_control.IAMUserAccessKey.__init__ = __init__


# GetAccountAuthorizationDetails' page size when MaxItems is not given, and its largest
# (AWS: "If you do not include this parameter, the number of items defaults to 100";
# maxItemsType is 1..1000).
AUTHORIZATION_DETAILS_DEFAULT_ITEMS = 100
AUTHORIZATION_DETAILS_MAX_ITEMS = 1000


def authorization_details_items(backend, filters):
    """Every entity GetAccountAuthorizationDetails returns for `filters`, in a stable order, as
    (result list name, entity).

    moto 5.2.5 returns every AWS-managed policy it loaded (about 1,300) whether used or not; AWS
    returns the AWS-managed policies in use in the account (attached to a user, group or role),
    as tools built on this call observe. moto also gets the filter partly wrong (`Role` alone
    still returns every managed policy)."""
    wanted = set(filters or ["User", "Group", "Role", "LocalManagedPolicy", "AWSManagedPolicy"])
    aws_managed = {p.arn for p in backend.aws_managed_policies}
    items = []
    if "User" in wanted:
        items += [("UserDetailList", u) for u in backend.users.values()]
    if "Group" in wanted:
        items += [("GroupDetailList", g) for g in backend.groups.values()]
    if "Role" in wanted:
        items += [("RoleDetailList", r) for r in backend.roles.values()]
    for policy in backend.managed_policies.values():
        if policy.arn in aws_managed:
            if "AWSManagedPolicy" in wanted and policy.attachment_count > 0:
                items.append(("Policies", policy))
        elif "LocalManagedPolicy" in wanted:
            items.append(("Policies", policy))
    return items


def patch_authorization_details():
    """iam:GetAccountAuthorizationDetails pages as AWS does (MaxItems, default 100, at most
    1,000 entities a page; Marker; IsTruncated), honours Filter, lists only the AWS-managed
    policies in use, and names each policy (PolicyName, PolicyId). moto 5.2.5 ignores MaxItems
    and Marker, answers everything at once, and leaves the names out."""
    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    def get_account_authorization_details(self):
        filters = self._get_param("Filter", [])
        try:
            max_items = int(self._get_param("MaxItems") or AUTHORIZATION_DETAILS_DEFAULT_ITEMS)
            start = int(self._get_param("Marker") or 0)
        except ValueError:
            from moto.iam.exceptions import ValidationError
            raise ValidationError("Invalid Marker or MaxItems")
        max_items = max(1, min(max_items, AUTHORIZATION_DETAILS_MAX_ITEMS))
        items = authorization_details_items(self.backend, filters)
        page = items[start:start + max_items]
        result = {"UserDetailList": [], "GroupDetailList": [], "RoleDetailList": [], "Policies": []}
        for name, entity in page:
            result[name].append(entity)
        result["IsTruncated"] = start + max_items < len(items)
        if result["IsTruncated"]:
            # Opaque to callers; here the index of the next entity.
            result["Marker"] = str(start + max_items)
        return ActionResult(result)

    IamResponse.get_account_authorization_details = get_account_authorization_details
    # moto's ManagedPolicyDetail lacks PolicyName and PolicyId (its serializer reads them as
    # attributes the policy does not have); AWS returns both.
    from moto.iam.models import ManagedPolicy
    ManagedPolicy.policy_name = property(lambda policy: policy.name)
    ManagedPolicy.policy_id = property(lambda policy: policy.id)


def seed_iam(doc):
    """POST /whittle-emulator/seed-iam: creates managed policies and roles in one account
    directly in moto's backend (no request per entity, nothing recorded in CloudTrail), for
    tests that need thousands of roles. Body:
    {"account": "111111111111", "policies": [{"name", "document", "path"?}],
     "roles": [{"name", "path"?, "tags"?: {k: v}, "inline"?: {name: document},
                "managed"?: [arn], "boundary"?: arn}]}.
    Answers {"policies": N, "roles": M}."""
    from moto.iam.models import iam_backends

    backend = iam_backends[str(doc.get("account") or DEFAULT_ACCOUNT_ID)]["aws"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    # An AWS-managed policy a role names is loaded into the account on demand: moto loads all
    # of them only with MOTO_IAM_LOAD_MANAGED_POLICIES=true, and then into every partition of
    # every account it touches (seconds each), which makes several accounts slow.
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy

    catalog = None
    for role in doc.get("roles", []):
        for arn in role.get("managed") or []:
            if arn.startswith("arn:aws:iam::aws:policy/") and arn not in backend.managed_policies:
                catalog = catalog or json.loads(aws_managed_policies_data)
                name = arn.rsplit("/", 1)[-1]
                if name in catalog:
                    policy = AWSManagedPolicy.from_data(name, backend.account_id, backend.region_name, catalog[name])
                    backend.managed_policies[policy.arn] = policy
                    backend.aws_managed_policies.append(policy)
    # Refuse a seed naming a policy that will not exist before creating anything, so a bad
    # request leaves the account as it was.
    account = backend.account_id
    known = set(backend.managed_policies) | {
        f"arn:aws:iam::{account}:policy{p.get('path', '/')}{p['name']}" for p in doc.get("policies", [])}
    for role in doc.get("roles", []):
        for arn in (role.get("managed") or []) + ([role["boundary"]] if role.get("boundary") else []):
            if arn not in known:
                raise ValueError(f"role {role['name']}: no policy {arn}")
    for policy in doc.get("policies", []):
        backend.create_policy(
            description="", path=policy.get("path", "/"), policy_document=policy["document"],
            policy_name=policy["name"], tags=[],
        )
    for role in doc.get("roles", []):
        backend.create_role(
            role_name=role["name"], assume_role_policy_document=trust, path=role.get("path", "/"),
            permissions_boundary=role.get("boundary"), description="",
            tags=[{"Key": k, "Value": v} for k, v in (role.get("tags") or {}).items()],
            max_session_duration=None,
        )
        for name, document in (role.get("inline") or {}).items():
            backend.put_role_policy(role["name"], name, document)
        for arn in role.get("managed") or []:
            backend.attach_role_policy(arn, role["name"])
    return {"policies": len(doc.get("policies", [])), "roles": len(doc.get("roles", []))}


def _start_propagation():
    return float(os.environ.get("WHITTLE_EMULATOR_ROLE_PROPAGATION_SECONDS") or 0)


# How long a new role takes to become assumable by Lambda (seconds); POST
# /whittle-emulator/role-propagation {"seconds": N} sets it, a reset restores the start-up value.
ROLE_PROPAGATION = {"seconds": _start_propagation()}


def patch_lambda_configuration():
    """Every function has a `RevisionId` (GetFunctionConfiguration, ListFunctions), and
    UpdateFunctionConfiguration works as Lambda's: a `RevisionId` that is not the function's
    latest is refused (412 PreconditionFailedException), every update gives the function a new
    RevisionId, and a role that does not exist, or was created less than
    WHITTLE_EMULATOR_ROLE_PROPAGATION_SECONDS ago (IAM's propagation to Lambda; default 0),
    "cannot be assumed by Lambda" (InvalidParameterValueException). moto 5.2.5 checks none of
    these, and gives functions no RevisionId at all."""
    from moto.awslambda.exceptions import InvalidParameterValueException, PreconditionFailedException
    from moto.awslambda.models import LambdaBackend
    from moto.iam.exceptions import NotFoundException as IAMNotFoundException
    from moto.iam.models import iam_backends

    from moto.awslambda.models import LambdaFunction

    def revision_of(fn):
        if not getattr(fn, "whittle_revision", None):
            fn.whittle_revision = str(uuid.uuid4())
        return fn.whittle_revision

    configuration = LambdaFunction.get_configuration

    def get_configuration(self, *args, **kwargs):
        config = configuration(self, *args, **kwargs)
        config["RevisionId"] = revision_of(self)
        return config

    LambdaFunction.get_configuration = get_configuration
    original = LambdaBackend.update_function_configuration

    def update_function_configuration(self, function_name, qualifier, body):
        fn = self.get_function(function_name, qualifier)
        revision = body.get("RevisionId")
        if revision and revision != revision_of(fn):
            raise PreconditionFailedException(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
        role_arn = body.get("Role")
        if role_arn:
            account_id = role_arn.split(":")[4]
            try:
                role = iam_backends[account_id]["aws"].get_role_by_arn(role_arn)
            except IAMNotFoundException:
                role = None
            propagation = ROLE_PROPAGATION["seconds"]
            young = role is not None and (
                datetime.datetime.now(datetime.timezone.utc) - role.create_date.replace(tzinfo=datetime.timezone.utc)
            ).total_seconds() < propagation
            if role is None or young:
                raise InvalidParameterValueException("The role defined for the function cannot be assumed by Lambda.")
        original(self, function_name, qualifier, body)
        fn.whittle_revision = str(uuid.uuid4())
        return fn.get_configuration()

    LambdaBackend.update_function_configuration = update_function_configuration


def patch_moto():
    """Applies the patches to moto, once per process (a forked emulator inherits them)."""
    global _PATCHED
    if _PATCHED:
        return
    patch_secretsmanager()
    patch_inactive_access_keys()
    patch_native_rotation()
    patch_policy_evaluation()
    patch_s3_authorization()
    patch_authorization_details()
    patch_lambda_configuration()
    patch_managed_policies()
    patch_per_request_costs()
    _PATCHED = True


_PATCHED = False


def patch_managed_policies():
    """With MOTO_IAM_LOAD_MANAGED_POLICIES, moto builds the ~1,600 AWS managed policies into
    every IAM backend it creates, from a JSON string parsed each time (about 0.3 s of CPU), and
    it creates one backend per partition of an account: looking up an access key's account
    (every request in auth mode) visits all six partitions. Here the JSON is parsed once (in
    the fork server, before any emulator is forked), and only the `aws` partition gets the
    policies: no caller of the emulator uses another partition's ARNs."""
    from moto.iam import models as iam_models

    parsed = json.loads(iam_models.aws_managed_policies_data)

    def init_aws_policies(self):
        if not iam_models.load_iam_aws_managed_policies() or self.region_name != "aws":
            return []
        return [
            iam_models.AWSManagedPolicy.from_data(name, self.account_id, self.region_name, d)
            for name, d in parsed.items()
        ]

    iam_models.IAMBackend._init_aws_policies = init_aws_policies


def patch_per_request_costs():
    """Two costs moto pays again and again for the same answer (found with py-spy on the
    integration tests' emulators):
    - its dispatcher lists the moto package's directories (listdir and a stat each) on every
      request, to tell a service name from a host name: listed once here;
    - every KMS key gets an RSA-2048 private key, symmetric ones included (tens to hundreds of
      ms of CPU each). moto uses it only to sign and verify with asymmetric keys, so symmetric
      keys share one, made once (in the fork server, before any emulator is forked)."""
    from moto import backends as moto_backends
    from moto.kms import models as kms_models

    modules = tuple(moto_backends.list_of_moto_modules())
    moto_backends.list_of_moto_modules = lambda: modules

    generate_private_key = kms_models.generate_private_key
    shared = generate_private_key("SYMMETRIC_DEFAULT")

    def private_key(key_spec):
        if key_spec == "SYMMETRIC_DEFAULT":
            return shared
        return generate_private_key(key_spec)

    kms_models.generate_private_key = private_key


# Each service's Flask application, built before the fork server forks (`prebuild_apps`): moto
# builds one per service on an emulator's first request to it, loading the service's botocore
# model, which cost each emulator more CPU than most of its requests did.
_PREBUILT_APPS = {}


def prebuild_apps(services):
    """Builds each service's application once, for every emulator forked afterwards."""
    for service in services:
        _PREBUILT_APPS[service] = create_backend_app(service)


def backend_app(service):
    app = _PREBUILT_APPS.pop(service, None)
    return app if app is not None else create_backend_app(service)


def serve(host, port, announce, watch_stdin):
    """Runs the emulator on host:port until the process exits; calls announce(port) once it
    listens. With watch_stdin, exits when stdin closes."""
    patch_moto()
    recorder = Recorder(
        lookup_lag=float(os.environ.get("WHITTLE_EMULATOR_LOOKUP_LAG_SECONDS") or 0),
        delivery_lag=float(os.environ.get("WHITTLE_EMULATOR_DELIVERY_LAG_SECONDS") or 0),
    )
    app = Extension(DomainDispatcherApplication(backend_app), recorder)
    server = make_server(host, port, app, threaded=True)

    interval = float(os.environ.get("WHITTLE_EMULATOR_DELIVERY_SECONDS", "5"))

    def deliver_forever():
        while True:
            threading.Event().wait(interval)
            try:
                deliver(recorder)
            except Exception as error:  # never let delivery kill the emulator
                print(f"delivery failed: {error}", file=sys.stderr, flush=True)

    def exit_when_stdin_closes():
        # The parent holds our stdin; when it dies, for any reason, we go too.
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=deliver_forever, daemon=True).start()
    if watch_stdin:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    announce(server.server_port)
    server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    serve(
        args.host,
        args.port,
        lambda port: print(f" * Running on http://{args.host}:{port}", flush=True),
        watch_stdin=not os.environ.get("WHITTLE_EMULATOR_DETACHED"),
    )


if __name__ == "__main__":
    main()
