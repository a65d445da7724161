"""Execute a command the way systemd starts a service: descriptors from fd 3, variables naming
the service's own pid.

    python as_systemd.py [--fds FD,FD...] [--pid-vars VAR,VAR...] PROGRAM ARG...

``--fds`` moves the given (inherited) descriptors to 3, 4, ... in that order and sets
LISTEN_FDS to their count; ``--pid-vars`` sets each variable (LISTEN_PID, WATCHDOG_PID) to
this process's pid. Then it executes PROGRAM in place, so the pid stays the same, as systemd's
does. LISTEN_FDNAMES, WATCHDOG_USEC and the rest come from the environment as given.
"""

import fcntl
import os
import shutil
import sys


def main(argv: list[str]) -> None:
    fds: list[int] = []
    pid_vars: list[str] = []
    while argv and argv[0].startswith("--"):
        option, value = argv[0], argv[1]
        argv = argv[2:]
        if option == "--fds":
            fds = [int(fd) for fd in value.split(",") if fd]
        elif option == "--pid-vars":
            pid_vars = [name for name in value.split(",") if name]
        else:
            raise SystemExit(f"as_systemd.py: unknown option {option}")
    first_free = 3 + len(fds)
    # Copy every descriptor above the target range first, so no move overwrites another.
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, first_free) for fd in fds]
    for fd in fds:
        os.close(fd)
    for index, copy in enumerate(copies):
        os.dup2(copy, 3 + index, inheritable=True)
        os.close(copy)
    if fds:
        os.environ["LISTEN_FDS"] = str(len(fds))
    for name in pid_vars:
        os.environ[name] = str(os.getpid())
    program = shutil.which(argv[0]) or argv[0]
    os.execv(program, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
