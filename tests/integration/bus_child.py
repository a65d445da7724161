"""A small program on a sitebus Bus, run by the integration tests in several scenarios.

``python bus_child.py SCENARIO`` (also as ``python -m``, and as a console-script-like file).
Each generation (re-execution) appends ``gen=N pid=P cwd=D fds=...`` to ``generations.txt``
and says READY=1 on NOTIFY_SOCKET once the bus is STARTED.
"""

import os
import sys
import threading

from sitebus.bus import Bus
from sitebus.process.signals import SignalHandler
from sitebus.site.logs import log_to_screen
from tests.processes import notify

HERE = os.getcwd()


def main() -> None:
    scenario = sys.argv[1]
    generation = int(os.environ.get("CHILD_GENERATION", "0"))
    os.environ["CHILD_GENERATION"] = str(generation + 1)
    log_to_screen()
    bus = Bus()
    bus.subscribe("exit", lambda: print("exit listener ran", flush=True))
    bus.subscribe("graceful", lambda: notify("GRACEFUL=1"))
    with open(os.path.join(HERE, "generations.txt"), "a") as record:
        fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        record.write(f"gen={generation} pid={os.getpid()} cwd={os.getcwd()} fds={fds}\n")

    if scenario == "failstart":
        def broken():
            raise OSError("address already in use (on purpose)")
        bus.subscribe("start", broken)
        bus.start()
    if scenario == "failexit":
        def broken_exit():
            raise RuntimeError("exit listener failed (on purpose)")
        bus.subscribe("exit", broken_exit)
    if scenario == "noblock":
        bus.start()
        print("main thread returning", flush=True)
        return
    if scenario == "stopped":
        bus.start()
        bus.stop()
        print("main thread returning", flush=True)
        return

    SignalHandler(bus).subscribe()
    bus.start()
    if scenario == "restart" and generation == 0:
        os.chdir("/")  # restart must go back to the start-up directory
        leak = os.open(os.devnull, os.O_RDONLY)
        os.set_inheritable(leak, True)  # even an inheritable stray fd must not survive
        threading.Thread(target=bus.restart).start()
    # Say READY from inside block(), where every signal (Ctrl-C too) is handled.
    bus.call_in_main_thread(notify, f"READY=1\nGENERATION={generation}")
    bus.block()
    print(f"block returned in generation {generation}", flush=True)


if __name__ == "__main__":
    main()
