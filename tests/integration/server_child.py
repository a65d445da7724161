"""A site process with one or more servers, run by the server process tests.

``python server_child.py '[{"socket_port": 0}, {"name": "api", "socket_file": "a.sock"}]'``
builds a Bus with a SignalHandler and one Server per entry (a named server when the entry has
a "name"), serving a hello app. Once the bus is STARTED it says READY=1 on NOTIFY_SOCKET with
``ADDRESSES=`` (the bound addresses, as JSON). If the start fails it prints the threads and the
number of socket descriptors still open, then exits with the error's sysexits code.
"""

import json
import sys
import threading

from sitebus.bus import Bus
from sitebus.errors import exit_code_of
from sitebus.process.signals import SignalHandler
from sitebus.servers.server import Server
from sitebus.site.logs import log_to_screen
from tests.httpclients import hello_app
from tests.processes import notify, socket_fds


def main() -> None:
    specs = json.loads(sys.argv[1])
    log_to_screen()
    bus = Bus()
    SignalHandler(bus).subscribe()
    servers = [Server(bus, spec.pop("name", None), wsgi_app=hello_app, **spec) for spec in specs]
    for server in servers:
        server.subscribe()
    try:
        bus.start()
    except Exception as error:
        print(f"threads={sorted(t.name for t in threading.enumerate())}", flush=True)
        print(f"sockets={socket_fds()}", flush=True)
        sys.exit(exit_code_of(error))
    addresses = json.dumps([server.bound_addr for server in servers])
    bus.call_in_main_thread(notify, f"READY=1\nADDRESSES={addresses}")
    bus.block()


if __name__ == "__main__":
    main()
