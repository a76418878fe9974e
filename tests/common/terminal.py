#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal and plays a person typing at it, for the tests of
prompts (tests/common/terminal.rs calls this).

Input (JSON on stdin):
  {"argv": [...], "env": {...}, "timeout": 20,
   "steps": [{"expect": "text", "send": "typed", "secret": true}, ...]}

Each step waits until `expect` has appeared in the output since the previous step, then types
`send` followed by Enter. With "secret": true it first waits until the terminal's echo is off
(the program reads without echo), and fails if it never goes off: a secret typed while echo is on
would show on the screen.

Output (JSON on stdout): {"status": exit status, "transcript": everything the terminal showed,
"failed": null or why the session did not follow the steps}.
"""

import json
import os
import pty
import select
import sys
import termios
import time


def main():
    spec = json.load(sys.stdin)
    deadline = time.monotonic() + spec.get("timeout", 20)
    env = dict(os.environ)
    env.update(spec.get("env", {}))
    env.setdefault("TERM", "dumb")

    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvpe(spec["argv"][0], spec["argv"], env)
        finally:
            os._exit(127)

    transcript = b""
    seen_until = 0
    failed = None

    def read_some(wait):
        nonlocal transcript
        ready, _, _ = select.select([master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(master, 4096)
        except OSError:
            return False  # the program closed the terminal (exited)
        if not chunk:
            return False
        transcript += chunk
        return True

    def echo_is_off():
        return not termios.tcgetattr(master)[3] & termios.ECHO

    for step in spec["steps"]:
        want = step["expect"].encode()
        while want not in transcript[seen_until:]:
            if time.monotonic() > deadline or not read_some(0.05):
                failed = f"never saw {step['expect']!r}"
                break
        if failed:
            break
        seen_until = transcript.index(want, seen_until) + len(want)
        if step.get("secret"):
            while not echo_is_off():
                if time.monotonic() > deadline:
                    failed = f"echo stayed on at {step['expect']!r}"
                    break
                time.sleep(0.01)
            if failed:
                break
        os.write(master, step["send"].encode() + b"\r")

    while time.monotonic() < deadline and read_some(0.1):
        pass
    status = None
    while time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        time.sleep(0.02)
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        failed = failed or "the program did not exit in time"
    json.dump(
        {
            "status": status,
            "transcript": transcript.decode("utf-8", "replace"),
            "failed": failed,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
