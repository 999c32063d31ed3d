"""docs/ci/post-comments.py against a local stand-in for GitHub's issue-comment API and
GitLab's merge-request-note API (no network): run as CI runs it, as a process with the
token in its environment.

    .venv-moto/bin/python -m unittest discover -s tests/ci
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "docs", "ci", "post-comments.py")
TOKEN = "tok-0123456789-secret"


class StandIn:
    """Comments of one pull request (GitHub) or merge request (GitLab), served by the two
    APIs' routes, a few per page so that listing pages; `fail` answers every write with it."""

    def __init__(self, page_size=2):
        self.page_size = page_size
        self.comments = []  # [{"id", "body", "system"}]
        self.next_id = 100
        self.fail = None
        self.calls = []
        self.auth = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                stand_in.handle(self, "GET")

            def do_POST(self):
                stand_in.handle(self, "POST")

            def do_PATCH(self):
                stand_in.handle(self, "PATCH")

            def do_PUT(self):
                stand_in.handle(self, "PUT")

            def do_DELETE(self):
                stand_in.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def add(self, body, system=False):
        self.comments.append({"id": self.next_id, "body": body, "system": system})
        self.next_id += 1

    def bodies(self):
        return [c["body"] for c in self.comments if not c["system"]]

    def handle(self, request, method):
        url = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length)) if length else None
        self.calls.append((method, url.path))
        self.auth.append(request.headers.get("Authorization") or request.headers.get("PRIVATE-TOKEN"))
        github = re.fullmatch(r"/repos/acme/infra/issues/(?:7/comments|comments/(\d+))", url.path)
        gitlab = re.fullmatch(r"/api/v4/projects/42/merge_requests/9/notes(?:/(\d+))?", url.path)
        match = github or gitlab
        if not match:
            return self.answer(request, 404, {"message": "Not Found"})
        if method != "GET" and self.fail:
            return self.answer(request, self.fail[0], {"message": self.fail[1]})
        target = match.group(1)
        if method == "GET" and target is None:
            page = int(query.get("page", "1"))
            size = min(int(query.get("per_page", "30")), self.page_size)
            chunk = self.comments[(page - 1) * size : page * size]
            more = page * size < len(self.comments)
            headers = {}
            if github and more:
                nxt = f"{self.url}{url.path}?per_page={query.get('per_page')}&page={page + 1}"
                headers["Link"] = f'<{nxt}>; rel="next", <{self.url}{url.path}?page=99>; rel="last"'
            if gitlab:
                headers["X-Next-Page"] = str(page + 1) if more else ""
            listed = [{"id": c["id"], "body": c["body"], "system": c["system"]} for c in chunk]
            if github:
                listed = [{"id": c["id"], "body": c["body"]} for c in chunk if not c["system"]]
            return self.answer(request, 200, listed, headers)
        if method == "POST" and target is None:
            self.add(body["body"])
            return self.answer(request, 201, self.comments[-1])
        found = [c for c in self.comments if str(c["id"]) == target]
        if not found:
            return self.answer(request, 404, {"message": "Not Found"})
        if method in ("PATCH", "PUT"):
            found[0]["body"] = body["body"]
            return self.answer(request, 200, found[0])
        if method == "DELETE":
            self.comments.remove(found[0])
            return self.answer(request, 204, None)
        return self.answer(request, 405, {"message": "Method Not Allowed"})

    def answer(self, request, status, payload, headers=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


class PostComments:
    """Shared cases, run once per provider."""

    provider = None

    def setUp(self):
        self.api = StandIn()
        self.addCleanup(self.api.close)
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        # Someone else's comments on the same pull request stay untouched.
        self.api.add("LGTM")
        self.api.add("please look at the IAM change")

    def parts(self, *texts):
        paths = []
        for i, text in enumerate(texts, start=1):
            path = os.path.join(self.dir.name, f"plan-{i}.md")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            paths.append(path)
        return paths

    def post(self, *texts):
        result = subprocess.run(
            [sys.executable, SCRIPT, *self.args(), *self.parts(*texts)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertNotIn(TOKEN, result.stdout + result.stderr)
        return result

    def plan_bodies(self):
        return [b for b in self.api.bodies() if b.startswith("<!-- whittle-plan part")]

    def test_first_post_creates_one_comment_per_part(self):
        result = self.post("## whittle plan A\npart one", "part two", "part three")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            self.plan_bodies(),
            [
                "<!-- whittle-plan part 1 -->\n## whittle plan A\npart one",
                "<!-- whittle-plan part 2 -->\npart two",
                "<!-- whittle-plan part 3 -->\npart three",
            ],
        )
        self.assertEqual(result.stdout.split("\n")[:3], ["part 1: created", "part 2: created", "part 3: created"])
        self.assertEqual(self.api.bodies()[:2], ["LGTM", "please look at the IAM change"])
        self.assertTrue(all(TOKEN in (a or "") for a in self.api.auth), "every call carries the token")

    def test_second_post_updates_in_place_and_leaves_unchanged_parts_alone(self):
        self.post("one", "two")
        ids = [c["id"] for c in self.api.comments]
        self.api.calls.clear()
        result = self.post("one", "two, revised")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([c["id"] for c in self.api.comments], ids, "no comment created or deleted")
        self.assertEqual(self.plan_bodies()[1], "<!-- whittle-plan part 2 -->\ntwo, revised")
        self.assertIn("part 1: unchanged", result.stdout)
        writes = [c for c in self.api.calls if c[0] != "GET"]
        self.assertEqual(len(writes), 1, writes)

    def test_fewer_parts_delete_the_extras_and_none_deletes_all(self):
        self.post("one", "two", "three")
        result = self.post("one only")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.plan_bodies(), ["<!-- whittle-plan part 1 -->\none only"])
        self.assertIn("part 3: deleted", result.stdout)
        result = self.post()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.plan_bodies(), [])
        self.assertEqual(self.api.bodies(), ["LGTM", "please look at the IAM change"])

    def test_comments_on_later_pages_are_found(self):
        # Two comments a page: the parts sit on pages 2 to 4 behind other comments.
        for i in range(3):
            self.api.add(f"review note {i}")
        self.post("one", "two", "three")
        self.api.calls.clear()
        self.post("one", "two", "three, revised")
        self.assertEqual(len(self.plan_bodies()), 3, self.api.bodies())
        self.assertEqual(self.plan_bodies()[2], "<!-- whittle-plan part 3 -->\nthree, revised")
        pages = [p for m, p in self.api.calls if m == "GET"]
        self.assertEqual(len(pages), 4, "8 comments, 2 a page")

    def test_an_api_error_fails_with_a_clear_message_and_no_token(self):
        self.api.fail = (403, f"Resource not accessible by integration (token {TOKEN})")
        result = self.post("one")
        self.assertEqual(result.returncode, 1)
        self.assertIn("post-comments:", result.stderr)
        self.assertIn("answered 403", result.stderr)
        self.assertIn("Resource not accessible by integration", result.stderr)
        self.assertIn("***", result.stderr, "the echoed token is masked")

    def test_a_missing_setting_is_named(self):
        env = self.env()
        del env[self.token_variable]
        result = subprocess.run(
            [sys.executable, SCRIPT, *self.args()], env=env, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.token_variable} is not set", result.stderr)


class GitHubTest(PostComments, unittest.TestCase):
    token_variable = "GITHUB_TOKEN"

    def args(self):
        return ["github", "--number", "7"]

    def env(self):
        return {
            "PATH": os.environ.get("PATH", ""),
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_API_URL": self.api.url,
            "GITHUB_REPOSITORY": "acme/infra",
        }


class GitLabTest(PostComments, unittest.TestCase):
    token_variable = "GITLAB_TOKEN"

    def args(self):
        return ["gitlab"]

    def env(self):
        return {
            "PATH": os.environ.get("PATH", ""),
            "GITLAB_TOKEN": TOKEN,
            "CI_API_V4_URL": f"{self.api.url}/api/v4",
            "CI_PROJECT_ID": "42",
            "CI_MERGE_REQUEST_IID": "9",
        }

    def test_system_notes_are_left_alone(self):
        self.api.add("<!-- whittle-plan part 1 --> mentioned in a commit", system=True)
        self.post("one")
        self.assertEqual(self.plan_bodies(), ["<!-- whittle-plan part 1 -->\none"])
        self.assertTrue(any(c["system"] for c in self.api.comments))


if __name__ == "__main__":
    unittest.main()
