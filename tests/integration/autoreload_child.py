"""A program on a Bus with a SignalHandler and an Autoreloader, run by the autoreload tests.

``python autoreload_child.py [--watcher NAME] [--frequency F] [--file PATH ...]``, in a
directory holding ``watched_mod.py`` (which sets ``VALUE``). Each generation (re-execution)
appends ``gen=N pid=P value=V`` to ``generations.txt`` and, once the bus is STARTED, says
``READY=1``, ``GENERATION=N`` and ``VALUE=V`` on NOTIFY_SOCKET. SIGUSR2 imports
``lazypkg.mod`` and says ``LAZY=<its VALUE>``; SIGUSR1 (graceful) says ``GRACEFUL=1``.
"""

import argparse
import logging
import os

from sitebus.bus import Bus
from sitebus.process.signals import SignalHandler
from sitebus.reload.autoreload import Autoreloader
from sitebus.site.logs import log_to_screen
from tests.processes import notify


def import_lazily() -> None:
    import lazypkg.mod

    notify(f"LAZY={lazypkg.mod.VALUE}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--watcher", default="auto")
    parser.add_argument("--frequency", type=float, default=1)
    parser.add_argument("--file", action="append", default=[])
    args = parser.parse_args()

    generation = int(os.environ.get("CHILD_GENERATION", "0"))
    os.environ["CHILD_GENERATION"] = str(generation + 1)
    log_to_screen(level=logging.DEBUG)

    import watched_mod

    with open("generations.txt", "a") as record:
        record.write(f"gen={generation} pid={os.getpid()} value={watched_mod.VALUE}\n")

    bus = Bus()
    bus.subscribe("graceful", lambda: notify("GRACEFUL=1"), priority=90)  # after the plugins
    signals = SignalHandler(bus)
    signals.handlers["SIGUSR2"] = import_lazily
    signals.subscribe()
    reloader = Autoreloader(bus, frequency=args.frequency)
    reloader.watcher = args.watcher
    for name in args.file:
        reloader.files.add(name)
    reloader.subscribe()
    bus.start()
    bus.call_in_main_thread(notify, f"READY=1\nGENERATION={generation}\nVALUE={watched_mod.VALUE}")
    bus.block()


if __name__ == "__main__":
    main()
