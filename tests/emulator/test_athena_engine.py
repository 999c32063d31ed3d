"""The emulator's Athena: the SQL is executed over the trail files in S3 (athena_engine.py).

Run: .venv-moto/bin/python -m unittest discover -s tests/emulator -v
"""

import gzip
import json
import os
import time
import unittest

from test_whittle_emulator import Emulator

HERE = os.path.dirname(os.path.abspath(__file__))
ACCOUNT = "123456789012"


def table_ddl(table="cloudtrail", bucket="trail-bucket", regions="us-east-1,eu-west-1"):
    with open(os.path.join(HERE, "cloudtrail_table.sql")) as f:
        text = f.read()
    return (text.replace("{table}", table).replace("{bucket}", bucket)
            .replace("{accounts}", ACCOUNT).replace("{regions}", regions))


def record(time_, name, role="app", session="fn", error=None, region="us-east-1", event_id=None):
    doc = {
        "eventVersion": "1.08", "eventTime": time_, "eventSource": "s3.amazonaws.com",
        "eventName": name, "awsRegion": region, "eventID": event_id or f"{name}-{time_}",
        "eventType": "AwsApiCall", "recipientAccountId": ACCOUNT,
        "userIdentity": {
            "type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
            "accountId": ACCOUNT,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}"}},
        },
        "requestParameters": {"bucketName": "data", "key": "k"},
        "resources": [{"ARN": "arn:aws:s3:::data/k", "accountId": ACCOUNT, "type": "AWS::S3::Object"}],
    }
    if error:
        doc["errorCode"] = "AccessDenied"
        doc["errorMessage"] = f"User: x is not authorized to perform: s3:{name} on resource: y"
    return doc


class AthenaEngineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emulator = Emulator()
        cls.athena = cls.emulator.client("athena")
        s3 = cls.emulator.client("s3")
        s3.create_bucket(Bucket="trail-bucket")
        s3.create_bucket(Bucket="results")
        cls.sizes = {}
        layout = {
            ("us-east-1", "2026/11/20"): [record("2026-11-20T10:00:00Z", "GetObject"), record("2026-11-20T11:00:00Z", "GetObject"),
                                          record("2026-11-20T12:00:00Z", "PutObject", error=True)],
            ("us-east-1", "2026/11/21"): [record("2026-11-21T00:00:00Z", "GetObject", session="other")],
            ("eu-west-1", "2026/11/21"): [record("2026-11-21T09:00:00Z", "ListBuckets", region="eu-west-1")],
            # Not a projected region: not part of the table.
            ("ap-south-1", "2026/11/21"): [record("2026-11-21T09:00:00Z", "ListBuckets", region="ap-south-1")],
        }
        for (region, day), records in layout.items():
            key = f"AWSLogs/{ACCOUNT}/CloudTrail/{region}/{day}/{ACCOUNT}_CloudTrail_{region}_x.json.gz"
            body = gzip.compress(json.dumps({"Records": records}).encode())
            s3.put_object(Bucket="trail-bucket", Key=key, Body=body)
            cls.sizes[(region, day)] = len(body)
        cls.query(table_ddl())

    @classmethod
    def tearDownClass(cls):
        cls.emulator.close()

    @classmethod
    def query(cls, sql, database="default", output="s3://results/q/"):
        started = cls.athena.start_query_execution(
            QueryString=sql, QueryExecutionContext={"Database": database},
            ResultConfiguration={"OutputLocation": output})
        qid = started["QueryExecutionId"]
        states = []
        for _ in range(200):
            execution = cls.athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
            states.append(execution["Status"]["State"])
            if states[-1] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return qid, execution, states
            time.sleep(0.05)
        raise AssertionError(f"query {qid} did not finish: {states}")

    def rows(self, qid, page=1000):
        pages = self.athena.get_paginator("get_query_results").paginate(
            QueryExecutionId=qid, PaginationConfig={"PageSize": page})
        out = []
        for p in pages:
            for row in p["ResultSet"]["Rows"]:
                out.append([d.get("VarCharValue") for d in row["Data"]])
        return out

    def test_the_query_runs_over_the_trail_files_with_the_nested_columns(self):
        qid, execution, states = self.query(
            "SELECT useridentity.sessioncontext.sessionissuer.arn AS role, "
            "element_at(split(useridentity.arn, '/'), -1) AS session, eventname, "
            "regexp_extract(errormessage, 'perform: ([A-Za-z0-9-]+:[A-Za-z0-9*]+)', 1) AS denied, "
            "count(*) AS calls, min(eventtime) AS first_seen, "
            "json_extract_scalar(requestparameters, '$.bucketName') AS bucket, "
            "resources[1].arn AS resource "
            "FROM cloudtrail WHERE \"timestamp\" = '2026/11/20' AND region = 'us-east-1' "
            "GROUP BY 1, 2, 3, 4, 7, 8 ORDER BY eventname")
        self.assertEqual(execution["Status"]["State"], "SUCCEEDED", execution["Status"])
        self.assertIn("QUEUED", states[:1] + ["QUEUED"])  # the first poll may already see RUNNING
        rows = self.rows(qid)
        self.assertEqual(rows[0], ["role", "session", "eventname", "denied", "calls", "first_seen", "bucket", "resource"])
        role = f"arn:aws:iam::{ACCOUNT}:role/app"
        self.assertEqual(rows[1:], [
            [role, "fn", "GetObject", None, "2", "2026-11-20T10:00:00Z", "data", "arn:aws:s3:::data/k"],
            [role, "fn", "PutObject", "s3:PutObject", "1", "2026-11-20T12:00:00Z", "data", "arn:aws:s3:::data/k"],
        ])
        # Pruning: only the one file of that day and region was read.
        self.assertEqual(execution["Statistics"]["DataScannedInBytes"], self.sizes[("us-east-1", "2026/11/20")])
        # The results are CSV at the output location, header first.
        s3 = self.emulator.client("s3")
        body = s3.get_object(Bucket="results", Key=f"q/{qid}.csv")["Body"].read().decode()
        self.assertEqual(body.splitlines()[0], '"role","session","eventname","denied","calls","first_seen","bucket","resource"')
        self.assertEqual(execution["ResultConfiguration"]["OutputLocation"], f"s3://results/q/{qid}.csv")

    def test_pruning_reads_only_matching_partitions_and_enum_regions(self):
        qid, execution, _ = self.query("SELECT count(*) AS n FROM cloudtrail WHERE \"timestamp\" >= '2026/11/21'")
        self.assertEqual(self.rows(qid)[1], ["2"])  # ap-south-1 is not a projected region
        self.assertEqual(execution["Statistics"]["DataScannedInBytes"],
                         self.sizes[("us-east-1", "2026/11/21")] + self.sizes[("eu-west-1", "2026/11/21")])
        qid, execution, _ = self.query("SELECT count(*) AS n FROM cloudtrail WHERE \"timestamp\" = '2020/01/01'")
        self.assertEqual(self.rows(qid)[1], ["0"])
        self.assertEqual(execution["Statistics"]["DataScannedInBytes"], 0)
        qid, execution, _ = self.query("SELECT count(*) AS n FROM cloudtrail")
        self.assertEqual(self.rows(qid)[1], ["5"])
        self.assertEqual(execution["Statistics"]["DataScannedInBytes"],
                         sum(v for k, v in self.sizes.items() if k[0] != "ap-south-1"))

    def test_results_are_paged_with_the_header_first(self):
        qid, _, _ = self.query("SELECT eventid FROM cloudtrail ORDER BY eventid")
        pages = list(self.athena.get_paginator("get_query_results").paginate(
            QueryExecutionId=qid, PaginationConfig={"PageSize": 2}))
        self.assertEqual([len(p["ResultSet"]["Rows"]) for p in pages], [2, 2, 2])
        self.assertEqual(pages[0]["ResultSet"]["Rows"][0]["Data"][0]["VarCharValue"], "eventid")

    def test_mistakes_fail_as_athena_says_them(self):
        _, execution, _ = self.query("SELECT eventnme FROM cloudtrail")
        self.assertEqual(execution["Status"]["State"], "FAILED")
        self.assertEqual(execution["Status"]["StateChangeReason"],
                         "COLUMN_NOT_FOUND: line 1:8: Column 'eventnme' cannot be resolved")
        _, execution, _ = self.query("SELECT 1 FROM nosuch")
        self.assertEqual(execution["Status"]["StateChangeReason"],
                         "TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.default.nosuch' does not exist")
        _, execution, _ = self.query("SELEC 1")
        self.assertTrue(execution["Status"]["StateChangeReason"].startswith("SYNTAX_ERROR"), execution["Status"])
        _, execution, _ = self.query("SELECT 1 AS x FROM cloudtrail", output="s3://no-such-bucket/q/")
        self.assertEqual(execution["Status"]["State"], "FAILED")
        with self.assertRaises(Exception):
            self.athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"])

    def test_seeded_results_still_win(self):
        row = {"Data": [{"VarCharValue": "seeded"}]}
        self.emulator.post("/moto-api/static/athena/query-results",
                           {"account_id": ACCOUNT, "region": "us-east-1", "results": [{"rows": [row]}]})
        qid, execution, _ = self.query("SELECT eventnme FROM cloudtrail")
        self.assertEqual(execution["Status"]["State"], "SUCCEEDED")
        self.assertEqual(self.rows(qid), [["seeded"]])


if __name__ == "__main__":
    unittest.main()
