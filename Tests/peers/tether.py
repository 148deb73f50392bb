#!/usr/bin/python3
"""tether.py [--stop-signal SIG] -- COMMAND [ARG]...: run COMMAND so that it cannot outlive the
test that started it.

The test harness starts aria2c, transmission-cli and opentracker through this. If the test process
dies without stopping them (a crash, a SIGKILL), the peer would otherwise keep its port and its
files; here:
  * SIGTERM/SIGINT/SIGHUP sent to the tether are forwarded to the command's process group (the
    command leads a group of its own, so its children get them too); SIGTERM and SIGINT
    are sent as --stop-signal (default TERM; opentracker blocks SIGTERM and stops on SIGINT), and
    if the command is still there 3 s later it gets SIGKILL;
  * the tether polls its own parent and, once the parent is gone, stops the command the same way;
  * the command gets PR_SET_PDEATHSIG(SIGKILL), set in this single-threaded process, so it dies
    with the tether even if the tether is SIGKILLed (the kernel clears this when a program changes
    its user, as opentracker does when it drops to nobody: the parent watch covers that case);
  * the command inherits only stdin/stdout/stderr. Foundation's Process learns that a child ended
    when every holder of a socket it passed to the child has closed it; a grandchild holding it
    would hide the tether's exit from Process.isRunning and waitUntilExit.
  * the tether exits with the command's status (128+N for a signal).
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE = 3.0


def main(argv):
    stop_signal = signal.SIGTERM
    if argv[:1] == ["--stop-signal"] and len(argv) >= 2:
        name = argv[1].upper()
        stop_signal = signal.Signals[name if name.startswith("SIG") else "SIG" + name]
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.stderr.write("usage: tether.py [--stop-signal SIG] -- COMMAND [ARG]...\n")
        return 2
    # Foundation's Process starts children with the spawning thread's signal mask, and Swift's
    # worker threads block SIGTERM, SIGINT and SIGHUP: unblock them here and in the command.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    tether = os.getpid()
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != tether:  # the tether died before prctl took effect
            os._exit(1)
        os.setpgid(0, 0)  # its own process group: signals reach whatever it starts, too
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            sys.stderr.write(f"tether: cannot run {argv[0]}: {e}\n")
            os._exit(127)

    state = {"kill_at": None}

    def send(signum):
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop():
        if state["kill_at"] is None:
            state["kill_at"] = time.monotonic() + GRACE
            send(stop_signal)

    def on_signal(signum, _frame):
        if signum in (signal.SIGTERM, signal.SIGINT):
            stop()
        else:
            send(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 1
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        if os.getppid() != parent:
            stop()
        if state["kill_at"] is not None and time.monotonic() >= state["kill_at"]:
            send(signal.SIGKILL)
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
