#!/usr/bin/python3
"""tether.py -- COMMAND [ARG]...: run COMMAND so that it cannot outlive the test that started it.

The test harness starts aria2c, transmission-cli and opentracker through this. If the test process
dies without stopping them (a crash, a SIGKILL), the peer would otherwise keep its port and its
files; here:
  * the command gets PR_SET_PDEATHSIG(SIGKILL), set in this single-threaded process, so it dies
    with the tether even if the tether is SIGKILLed;
  * the tether polls its own parent and, once the parent is gone, sends the command SIGTERM, then
    SIGKILL after 3 s;
  * SIGTERM/SIGINT/SIGHUP sent to the tether are forwarded to the command;
  * the tether exits with the command's status (128+N for a signal).
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1


def main(argv):
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.stderr.write("usage: tether.py -- COMMAND [ARG]...\n")
        return 2
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:  # the tether died before prctl took effect
            os._exit(1)
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            sys.stderr.write(f"tether: cannot run {argv[0]}: {e}\n")
            os._exit(127)

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)
    orphaned_at = None
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 1
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        if os.getppid() != parent:
            if orphaned_at is None:
                orphaned_at = time.monotonic()
                forward(signal.SIGTERM, None)
            elif time.monotonic() - orphaned_at > 3:
                forward(signal.SIGKILL, None)
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
