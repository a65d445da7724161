"""Tutorial 11: organize my code, with a dispatcher, a tool and a plugin.

- A dispatcher picks the handler: ``ForceLowerDispatcher`` lower-cases the path, so
  ``/GENerAte`` reaches ``generate`` (the "till" that leads each customer).
- A tool runs per request at a hook point: ``tools.timeit`` times the page handler and
  reports it in an ``X-Handler-Time`` header (the "discount for some customers").
- A plugin works outside requests on the engine: ``StringStore`` keeps the strings that
  ``generate`` publishes on the bus's ``string-generated`` channel, and empties itself when
  the engine stops (the "crew that keeps the shelves in order").
"""

import random
import string
import threading
import time

import services.web as cherrypy
from services.web._cpdispatch import Dispatcher
from services.web.process.plugins import SimplePlugin


class ForceLowerDispatcher(Dispatcher):
    def __call__(self, path_info):
        return Dispatcher.__call__(self, path_info.lower())


class TimingTool(cherrypy.Tool):
    def __init__(self):
        cherrypy.Tool.__init__(self, 'before_handler', self.start_timer, priority=95)

    def _setup(self):
        cherrypy.Tool._setup(self)
        cherrypy.request.hooks.attach('before_finalize', self.end_timer, priority=5)

    def start_timer(self):
        cherrypy.request._time = time.time()

    def end_timer(self):
        duration = time.time() - cherrypy.request._time
        cherrypy.response.headers['X-Handler-Time'] = f'{duration:.6f}'


cherrypy.tools.timeit = TimingTool()


class StringStore(SimplePlugin):
    """Keep every generated string; answer the 'strings' channel with them."""

    def __init__(self, bus):
        SimplePlugin.__init__(self, bus)
        self.strings = []
        self.lock = threading.Lock()

    def subscribe(self):
        SimplePlugin.subscribe(self)
        self.bus.subscribe('string-generated', self.store)
        self.bus.subscribe('strings', self.list)

    def unsubscribe(self):
        SimplePlugin.unsubscribe(self)
        self.bus.unsubscribe('string-generated', self.store)
        self.bus.unsubscribe('strings', self.list)

    def store(self, value):
        with self.lock:
            self.strings.append(value)

    def list(self):
        with self.lock:
            return list(self.strings)

    def stop(self):
        with self.lock:
            self.strings.clear()


class StringGenerator:
    @cherrypy.expose
    def index(self):
        return "Hello world!"

    @cherrypy.expose
    def generate(self, length=8):
        some_string = ''.join(random.sample(string.hexdigits, int(length)))
        cherrypy.engine.publish('string-generated', some_string)
        return some_string

    @cherrypy.expose
    def history(self):
        (strings,) = cherrypy.engine.publish('strings') or ([],)
        return ' '.join(strings)


conf = {
    '/': {
        'request.dispatch': ForceLowerDispatcher(),
        'tools.timeit.on': True,
    }
}

if __name__ == '__main__':
    StringStore(cherrypy.engine).subscribe()
    cherrypy.quickstart(StringGenerator(), '/', conf)
