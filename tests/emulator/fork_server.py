"""Starts whittle emulators by forking one warmed-up process.

Starting `whittle_emulator.py` costs about 0.6 s of CPU (importing moto), and the first call to
some services more (Systems Manager's first call imports moto's EC2 models: another second);
the integration tests start about ninety emulators. This process pays those imports once and
forks a fresh emulator per request: each child is a whole emulator of its own (own port, own
state, nothing shared with its siblings), started in milliseconds.

Protocol, one JSON document a line: after the imports it prints {"ready": true}; then, for each
line read from stdin:
- {"start": {"NAME": "VALUE", ...}} forks an emulator with these extra environment variables
  (only settings read at run time, as the emulator's own WHITTLE_EMULATOR_* and moto's
  MOTO_IAM_LOAD_MANAGED_POLICIES are) and answers {"pid": PID, "url": "http://127.0.0.1:PORT"}
  once it listens, or {"error": "..."};
- {"stop": PID} kills that emulator (one this process started) and answers {"stopped": PID}.
When stdin closes (the test process is gone), every emulator is killed and this process exits;
an emulator also dies with this process if it is killed (PR_SET_PDEATHSIG).
"""

import ctypes
import gc
import importlib
import json
import os
import random
import signal
import sys
import traceback

import whittle_emulator
from moto import backends
from moto.core.base_backend import AccountSpecificBackend
from moto.core.utils import get_pagination_model, get_service_model
from moto.moto_api._internal import mock_random

# The services the tests call, whose moto modules are imported once here.
SERVICES = [
    "athena", "cloudtrail", "cloudwatch", "dynamodb", "iam", "kms", "lambda", "organizations",
    "s3", "secretsmanager", "sqs", "ssm", "sts",
]


PR_SET_PDEATHSIG = 1


def preload():
    whittle_emulator.patch_moto()
    for service in SERVICES:
        # The models (get_backend imports them without creating a backend: no state), and the
        # URL table with the responses, which moto imports on a service's first request.
        backend = backends.get_backend(service).backend
        importlib.import_module(backend.__module__.rsplit(".", 1)[0] + ".urls")
        # What moto otherwise loads in each emulator on its first request to a service (its
        # botocore model and pagination tables, parsed from JSON files: measured with py-spy,
        # a fifth of all the emulators' CPU in the integration tests), loaded into caches the
        # children inherit.
        get_service_model(service)
        try:
            get_pagination_model(service)
        except Exception:  # a service without paginators
            pass
    whittle_emulator.prebuild_apps(SERVICES)
    # Building an application creates the default account's backend of its service (moto
    # reads the URL table from one): dropped, so that each emulator creates its own with its
    # own settings (MOTO_IAM_LOAD_MANAGED_POLICIES is read when the IAM backend is created).
    for service in SERVICES:
        backends.get_backend(service).clear()
    # The region list each new account's backends ask botocore for (its endpoints file).
    AccountSpecificBackend.get_session().get_available_regions("iam")
    # Keep the garbage collector off the imported objects: a child then shares their memory
    # pages instead of copying them.
    gc.freeze()


def run_child(env, report):
    """In the forked child: becomes an emulator; never returns."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != SERVER_PID:
            os._exit(1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.environ.update(env)
        # Fresh identifiers: moto's generator (and Python's) were seeded in the parent.
        mock_random.seed()
        random.seed()

        def announce(port):
            os.write(report, f"{port}\n".encode())
            os.close(report)

        whittle_emulator.serve("127.0.0.1", 0, announce, watch_stdin=False)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(1)


def start(env):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        run_child(env, write)
    os.close(write)
    with os.fdopen(read) as report:
        port = report.readline().strip()
    if not port:
        os.waitpid(pid, 0)
        return {"error": "the forked emulator exited before it listened (see its stderr)"}
    CHILDREN.add(pid)
    return {"pid": pid, "url": f"http://127.0.0.1:{port}"}


def stop(pid):
    if pid in CHILDREN:
        CHILDREN.discard(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    return {"stopped": pid}


def reap():
    """Collects emulators that died on their own."""
    while CHILDREN:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        CHILDREN.discard(pid)


SERVER_PID = os.getpid()
CHILDREN = set()


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    preload()
    reply = sys.stdout
    print(json.dumps({"ready": True}), file=reply, flush=True)
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if "start" in request:
                answer = start(request["start"])
            elif "stop" in request:
                answer = stop(request["stop"])
            else:
                answer = {"error": f"unknown request {line.strip()}"}
            reap()
            print(json.dumps(answer), file=reply, flush=True)
    finally:
        for pid in list(CHILDREN):
            stop(pid)


if __name__ == "__main__":
    main()
