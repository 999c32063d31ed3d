"""Runs the tests' short AWS scripts (the demo's seed, workloads, trial exercises) in processes
forked from one that has imported boto3 and loaded the AWS models once.

Each such script spent most of its CPU starting: importing boto3 (about 0.2 s) and creating
its first clients (botocore's models, endpoint rules and endpoints file: about 0.1 s), where
its own calls took a few tens of milliseconds; the integration tests run about a hundred.

    prewarmed.py --serve SOCKET      the server: warms up, prints "ready", serves SOCKET until
                                     its stdin closes (the test process is gone)
    prewarmed.py SOCKET SCRIPT ARG…  a client: runs `python SCRIPT ARG…` through the server

A client hands the server its argument list, working directory, environment and standard
streams (the descriptors themselves, over the Unix socket), and exits with the script's exit
status. The script runs in a child forked from the server, as `python SCRIPT` would run it:
`__main__`, `sys.argv`, `sys.path[0]` the script's directory. The script dies with its client
(the child watches the connection: a client killed on a timeout leaves nothing running) and
with the server. When no server answers, or for anything but a script (`-c`, `-m`), the client
becomes `python ARG…` itself. Run the client with `python -I -S`: it needs only the standard
library, and starts in a few milliseconds.
"""

import array
import json
import os
import socket
import sys


def client(path, argv):
    if not argv or argv[0].startswith("-"):
        os.execv(sys.executable, [sys.executable, *argv])
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        os.execv(sys.executable, [sys.executable, *argv])
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    request += b"\n"
    # The descriptors travel with the first byte; the rest follows as plain data.
    conn.sendmsg([request[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    conn.sendall(request[1:])
    answer = b""
    while chunk := conn.recv(64):
        answer += chunk
    try:
        sys.exit(int(answer))
    except ValueError:
        print("prewarmed: the script's process ended without an exit status", file=sys.stderr)
        sys.exit(1)


# The services the scripts call, whose models the server loads once.
SERVICES = ["dynamodb", "iam", "kms", "lambda", "logs", "s3", "secretsmanager", "sqs", "ssm", "sts"]


def warm_up():
    """Imports boto3 and loads what a client needs into one loader that every session of a
    forked script then uses. No credentials are looked up here: a script's session finds its
    own, from its own environment."""
    import boto3
    import botocore.loaders
    import botocore.session

    shared = botocore.loaders.create_loader()
    original = botocore.session.create_loader

    def create_loader(search_path_string=None):
        # A script that sets AWS_DATA_PATH gets a loader of its own.
        return original(search_path_string) if search_path_string else shared

    botocore.session.create_loader = create_loader
    session = boto3.session.Session(aws_access_key_id="warm-up", aws_secret_access_key="warm-up",
                                    region_name="us-east-1")
    for service in SERVICES:
        session.client(service, endpoint_url="http://127.0.0.1:9")


def run_script(conn, fds, request):
    """In the forked child: becomes the script; never returns."""
    code = 1
    try:
        import ctypes
        import random
        import runpy
        import signal
        import threading

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the server
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        random.seed()
        sys.stdin = open(0, closefd=False)

        def watch():
            # Nothing more comes from the client: an empty read means it is gone.
            conn.recv(1)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as stop:
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except BaseException as error:
            import traceback

            # As Python prints it: from the script's own frames on.
            tb = error.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != os.path.abspath(script):
                tb = tb.tb_next
            traceback.print_exception(type(error), error, tb or error.__traceback__)
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        conn.sendall(f"{code}\n".encode())
    finally:
        os._exit(code)


def receive(conn):
    """A client's request and its three descriptors."""
    data, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(3 * array.array("i").itemsize))
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the client went away before its request ended")
        data += chunk
    return list(fds), json.loads(data)


def serve(path):
    import gc
    import signal
    import threading

    warm_up()
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked scripts are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)

    def lifetime():
        # The test process holds stdin: when it closes, the server goes (its scripts with it),
        # and removes the directory the test process made for it.
        while os.read(0, 4096):
            pass
        directory = os.path.dirname(path)
        if os.path.basename(directory).startswith("whittle-prewarmed-"):
            for name in ("socket", "python"):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass
            try:
                os.rmdir(directory)
            except OSError:
                pass
        os._exit(0)

    threading.Thread(target=lifetime, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        try:
            fds, request = receive(conn)
        except (OSError, ValueError) as error:
            print(f"prewarmed: a bad request: {error}", file=sys.stderr, flush=True)
            conn.close()
            continue
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            conn.close()
            continue
        if os.fork() == 0:
            listener.close()
            run_script(conn, fds, request)
        for fd in fds:
            os.close(fd)
        conn.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
    else:
        client(sys.argv[1], sys.argv[2:])
