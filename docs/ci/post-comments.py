#!/usr/bin/env python3
"""Posts `whittle plan` Markdown parts as pull-request comments (GitHub) or merge-request
notes (GitLab): one comment per part, kept up to date on every push.

    post-comments.py github --number PR [plan-md/plan-1.md ...]
    post-comments.py gitlab [plan-md/plan-1.md ...]

Each comment starts with a marker line, `<!-- whittle-plan part N -->`. A part whose comment
exists is edited in place (left alone when unchanged), a new one is created, and comments of
parts beyond the last (the plan shrank) are deleted; with no parts at all (the plan proposes
nothing), every earlier part is deleted.

The settings come from the environment the CI system sets:
- GitHub Actions: GITHUB_TOKEN (the job's `github.token`, with `pull-requests: write`),
  GITHUB_REPOSITORY, GITHUB_API_URL; the pull request's number from `--number`.
- GitLab CI: GITLAB_TOKEN (a project access token with the `api` scope: CI_JOB_TOKEN cannot
  write notes: gitlab.com/gitlab-org/gitlab/-/issues/464591), CI_API_V4_URL, CI_PROJECT_ID,
  CI_MERGE_REQUEST_IID.
The token is sent in a header only; it is never printed, and is masked in any error text.
Standard library only, so it runs on any runner with Python 3.8+.
"""

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

MARKER = "<!-- whittle-plan part {} -->"
MARKER_RE = re.compile(r"^<!-- whittle-plan part (\d+) -->")
# Both APIs return at most 100 comments a page.
PER_PAGE = 100


class ApiError(Exception):
    pass


class Api:
    """Comments of one pull request or merge request."""

    def __init__(self, token, base, timeout=30):
        self.token = token
        self.base = base.rstrip("/")
        self.timeout = timeout

    def headers(self):
        raise NotImplementedError

    def request(self, method, url, body=None):
        """The decoded JSON answer (None when empty) and the response headers."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        for name, value in self.headers().items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
                return (json.loads(text) if text.strip() else None), response.headers
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise ApiError(self.mask(f"{method} {url} answered {e.code} {e.reason}: {detail}"))
        except (urllib.error.URLError, OSError) as e:
            raise ApiError(self.mask(f"{method} {url} failed: {e}"))

    def mask(self, text):
        return text.replace(self.token, "***") if self.token else text


class GitHub(Api):
    """Issue comments: a pull request's conversation comments are its issue's
    (GET/POST /repos/{repo}/issues/{number}/comments, PATCH/DELETE
    /repos/{repo}/issues/comments/{id}); pages are linked by the `Link` header's rel="next"."""

    name = "GitHub"

    def __init__(self, token, base, repo, number):
        super().__init__(token, base)
        self.repo = repo
        self.number = number

    def headers(self):
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "whittle-post-comments",
        }

    def comments(self):
        url = f"{self.base}/repos/{self.repo}/issues/{self.number}/comments?per_page={PER_PAGE}"
        while url:
            page, headers = self.request("GET", url)
            for comment in page:
                yield comment["id"], comment.get("body") or ""
            url = next_link(headers.get("Link", ""))

    def create(self, body):
        self.request("POST", f"{self.base}/repos/{self.repo}/issues/{self.number}/comments", {"body": body})

    def update(self, comment_id, body):
        self.request("PATCH", f"{self.base}/repos/{self.repo}/issues/comments/{comment_id}", {"body": body})

    def delete(self, comment_id):
        self.request("DELETE", f"{self.base}/repos/{self.repo}/issues/comments/{comment_id}")


class GitLab(Api):
    """Merge-request notes (GET/POST /projects/{id}/merge_requests/{iid}/notes, PUT/DELETE
    .../notes/{note_id}); the next page's number is in the `X-Next-Page` header, empty on the
    last. System notes (pushes, approvals) are skipped."""

    name = "GitLab"

    def __init__(self, token, base, project, iid):
        super().__init__(token, base)
        self.notes = f"{self.base}/projects/{urllib.parse.quote(str(project), safe='')}/merge_requests/{iid}/notes"

    def headers(self):
        return {"PRIVATE-TOKEN": self.token, "User-Agent": "whittle-post-comments"}

    def comments(self):
        page = "1"
        while page:
            notes, headers = self.request("GET", f"{self.notes}?per_page={PER_PAGE}&page={page}")
            for note in notes:
                if not note.get("system"):
                    yield note["id"], note.get("body") or ""
            page = headers.get("X-Next-Page", "")

    def create(self, body):
        self.request("POST", self.notes, {"body": body})

    def update(self, comment_id, body):
        self.request("PUT", f"{self.notes}/{comment_id}", {"body": body})

    def delete(self, comment_id):
        self.request("DELETE", f"{self.notes}/{comment_id}")


def next_link(link_header):
    for part in link_header.split(","):
        match = re.match(r'\s*<([^>]+)>\s*;\s*rel="next"', part)
        if match:
            return match.group(1)
    return None


def sync(api, parts):
    """Makes the comments match `parts` (texts, in order); returns what was done per part."""
    existing = {}
    for comment_id, body in api.comments():
        match = MARKER_RE.match(body)
        if match:
            # Two comments of one part (a run that raced another): the first is kept and
            # updated, the other deleted below.
            existing.setdefault(int(match.group(1)), []).append((comment_id, body))
    done = []
    for number, text in enumerate(parts, start=1):
        body = f"{MARKER.format(number)}\n{text}"
        found = existing.pop(number, [])
        if not found:
            api.create(body)
            done.append(f"part {number}: created")
            continue
        (comment_id, old), *extra = found
        existing[number] = extra
        if old == body:
            done.append(f"part {number}: unchanged")
        else:
            api.update(comment_id, body)
            done.append(f"part {number}: updated")
    for number in sorted(existing):
        for comment_id, _ in existing[number]:
            api.delete(comment_id)
            done.append(f"part {number}: deleted")
    return done


def require(name):
    value = os.environ.get(name, "")
    if not value:
        raise ApiError(f"{name} is not set; see the top of {os.path.basename(sys.argv[0])} for what each CI system sets")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("provider", choices=["github", "gitlab"])
    parser.add_argument("--number", help="GitHub: the pull request's number")
    parser.add_argument("parts", nargs="*", help="Markdown parts, in order (whittle plan --output-dir)")
    # Intermixed: the parts may follow --number (plain parse_args stops at it).
    args = parser.parse_intermixed_args(argv)
    try:
        parts = []
        for path in args.parts:
            with open(path, encoding="utf-8") as f:
                parts.append(f.read())
        if args.provider == "github":
            if not args.number:
                raise ApiError("--number (the pull request's number) is required for github")
            api = GitHub(
                require("GITHUB_TOKEN"),
                os.environ.get("GITHUB_API_URL", "https://api.github.com"),
                require("GITHUB_REPOSITORY"),
                args.number,
            )
        else:
            api = GitLab(
                require("GITLAB_TOKEN"),
                require("CI_API_V4_URL"),
                require("CI_PROJECT_ID"),
                require("CI_MERGE_REQUEST_IID"),
            )
        for line in sync(api, parts):
            print(line)
    except ApiError as e:
        name = {"github": "GitHub", "gitlab": "GitLab"}[args.provider]
        print(f"post-comments: {name} API: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"post-comments: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
