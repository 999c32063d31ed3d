"""prewarmed.py's own test: a script run through it behaves as `python SCRIPT` would.

Run: .venv-moto/bin/python -m unittest discover -s tests/emulator -v
"""

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PREWARMED = os.path.join(HERE, "prewarmed.py")

SCRIPT = textwrap.dedent("""\
    import json, os, sys
    import boto3
    sys.stdin.readline()
    print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "X": os.environ.get("X"),
                      "name": __name__, "path0": sys.path[0],
                      "key": boto3.Session().get_credentials().access_key}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
""")


class PrewarmedTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="whittle-prewarmed-")
        self.socket = os.path.join(self.dir, "socket")
        self.server = subprocess.Popen([sys.executable, PREWARMED, "--serve", self.socket],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.assertEqual(self.server.stdout.readline().strip(), "ready")
        self.work = tempfile.mkdtemp()
        self.script = os.path.join(self.work, "script.py")
        with open(self.script, "w") as f:
            f.write(SCRIPT)

    def tearDown(self):
        import shutil
        shutil.rmtree(self.work, ignore_errors=True)
        self.server.stdin.close()
        self.server.wait(timeout=10)
        self.server.stdout.close()

    def run_client(self, *args, **kw):
        return subprocess.run([sys.executable, "-I", "-S", PREWARMED, self.socket, *args],
                              capture_output=True, text=True, timeout=30, **kw)

    def test_a_script_gets_its_arguments_directory_environment_streams_and_status(self):
        cwd = tempfile.mkdtemp()
        env = {**os.environ, "X": "from the client", "AWS_ACCESS_KEY_ID": "AKIDCLIENT",
               "AWS_SECRET_ACCESS_KEY": "secret"}
        done = self.run_client(self.script, "3", "two words", input="a line\n", cwd=cwd, env=env)
        self.assertEqual(done.returncode, 3, done.stderr)
        import json
        seen = json.loads(done.stdout)
        self.assertEqual(seen["argv"], [self.script, "3", "two words"])
        self.assertEqual(seen["cwd"], os.path.realpath(cwd))
        self.assertEqual(seen["X"], "from the client")
        self.assertEqual(seen["name"], "__main__")
        self.assertEqual(seen["path0"], self.work)
        # Credentials come from the script's own environment, not the server's warm-up.
        self.assertEqual(seen["key"], "AKIDCLIENT")
        self.assertEqual(done.stderr, "to stderr\n")

    def test_an_exception_prints_the_scripts_traceback_and_exits_1(self):
        failing = os.path.join(self.work, "failing.py")
        with open(failing, "w") as f:
            f.write("raise ValueError('boom')\n")
        done = self.run_client(failing)
        self.assertEqual(done.returncode, 1)
        self.assertIn("ValueError: boom", done.stderr)
        self.assertNotIn("prewarmed.py", done.stderr)

    def test_a_killed_client_takes_its_script_with_it(self):
        marker = os.path.join(self.work, "still-running")
        sleeper = os.path.join(self.work, "sleeper.py")
        with open(sleeper, "w") as f:
            f.write(f"import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(1)\n"
                    f"open({marker!r}, 'w').close()\n")
        client = subprocess.Popen([sys.executable, "-I", "-S", PREWARMED, self.socket, sleeper],
                                  stdout=subprocess.PIPE, text=True)
        pid = int(client.stdout.readline())
        client.kill()
        client.wait()
        client.stdout.close()
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(f"/proc/{pid}"), "the script outlived its client")
        time.sleep(1.5)
        self.assertFalse(os.path.exists(marker))

    def test_without_a_server_the_client_runs_the_script_itself(self):
        done = subprocess.run([sys.executable, "-I", "-S", PREWARMED, os.path.join(self.dir, "none"),
                               self.script, "0"], input="x\n", capture_output=True, text=True,
                              timeout=30, env={**os.environ, "AWS_ACCESS_KEY_ID": "AKIDOWN",
                                               "AWS_SECRET_ACCESS_KEY": "s"})
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn('"key": "AKIDOWN"', done.stdout)

    def test_the_server_removes_its_directory_when_its_stdin_closes(self):
        self.server.stdin.close()
        self.server.wait(timeout=10)
        self.assertFalse(os.path.exists(self.dir))
        self.server.stdin = open(os.devnull, "w")  # for tearDown


if __name__ == "__main__":
    unittest.main()
