"""The CI recipes in docs/ci/ pass yamllint (docs/ci/.yamllint.yml), and each runs whittle
plan, renders from the JSON and posts with post-comments.py as docs/ci.md describes.

    .venv-moto/bin/python -m unittest discover -s tests/ci
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CI = os.path.join(ROOT, "docs", "ci")
CONFIG = os.path.join(CI, ".yamllint.yml")


def lint(*paths):
    return subprocess.run(
        [sys.executable, "-m", "yamllint", "-f", "parsable", "-c", CONFIG, *paths],
        capture_output=True,
        text=True,
        timeout=60,
    )


class Recipes(unittest.TestCase):
    def test_both_recipes_pass_yamllint(self):
        result = lint(os.path.join(CI, "github-workflow.yml"), os.path.join(CI, "gitlab-ci.yml"))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_the_linter_catches_a_broken_recipe(self):
        with tempfile.TemporaryDirectory() as tmp:
            broken = os.path.join(tmp, "broken.yml")
            shutil.copy(os.path.join(CI, "gitlab-ci.yml"), broken)
            with open(broken, "a", encoding="utf-8") as f:
                f.write("whittle-plan:\n  stage: test\n")
            result = lint(broken)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("duplication of key", result.stdout)

    def test_github_workflow_renders_from_the_json_and_posts_each_part(self):
        with open(os.path.join(CI, "github-workflow.yml"), encoding="utf-8") as f:
            workflow = yaml.safe_load(f)
        self.assertEqual(workflow["permissions"]["pull-requests"], "write")
        steps = workflow["jobs"]["plan"]["steps"]
        script = "\n".join(s.get("run", "") for s in steps)
        self.assertIn("whittle plan --config whittle.toml --format json > plan.json", script)
        self.assertIn("whittle plan render plan.json --format html", script)
        self.assertIn("post-comments.py github", script)
        comment = next(s for s in steps if s.get("name") == "comment")
        self.assertEqual(comment["env"], {"GITHUB_TOKEN": "${{ github.token }}"})

    def test_gitlab_job_renders_from_the_json_and_posts_each_part(self):
        with open(os.path.join(CI, "gitlab-ci.yml"), encoding="utf-8") as f:
            job = yaml.safe_load(f)["whittle-plan"]
        script = "\n".join(job["script"])
        self.assertIn("whittle plan render plan.json --format markdown --output-dir plan-md", script)
        self.assertIn("post-comments.py gitlab plan-md/plan-*.md", script)
        self.assertIn("plan-md/plan.html", job["artifacts"]["paths"])


if __name__ == "__main__":
    unittest.main()
