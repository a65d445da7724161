"""ASGI apps for the process tests, written into each test's directory: a raw ASGI callable,
Starlette, FastAPI, Django's asgi.py, a WSGI app to mount beside them, and an app whose
lifespan startup fails. Each notes its lifespan events in ``lifespan.log`` (event, app, pid).
"""

from __future__ import annotations

from pathlib import Path

NOTE = '''\
import os


def note(*what):
    with open("lifespan.log", "a") as log:
        log.write(" ".join(map(str, what)) + f" {os.getpid()}\\n")
'''

RAW = NOTE + '''
import asyncio

NAME = "raw"


def make(name):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    note("startup", name)
                    scope["state"]["greeting"] = "hi from " + name
                    await send({"type": "lifespan.startup.complete"})
                else:
                    note("shutdown", name)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    note("disconnect", name, message.get("code"))
                    return
                await send({"type": "websocket.send", "text": "echo " + message["text"]})
        else:
            await receive()
            start = {"type": "http.response.start", "status": 200,
                     "headers": [(b"content-type", b"text/plain")]}
            if scope["path"].endswith("/stream"):
                await send(start)
                for i in range(3):
                    await send({"type": "http.response.body", "body": b"chunk%d\\n" % i,
                                "more_body": True})
                    await asyncio.sleep(0.01)
                await send({"type": "http.response.body", "body": b""})
                return
            if scope["path"].endswith("/slow"):
                await asyncio.sleep(1)
            state = scope.get("state", {}).get("greeting")
            body = f"{os.getpid()} {name} {scope['root_path']} {scope['path']} {state}"
            await send(start)
            await send({"type": "http.response.body", "body": body.encode()})
    return app


app = make("raw")
other = make("other")
'''

STARLETTE = NOTE + '''
import contextlib

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute


@contextlib.asynccontextmanager
async def lifespan(app):
    note("startup", "starlette")
    yield
    note("shutdown", "starlette")


async def hello(request):
    return PlainTextResponse(f"starlette {request.scope['root_path']} {request.url.path}")


async def stream(request):
    async def chunks():
        for i in range(3):
            yield f"chunk{i}\\n"
    return StreamingResponse(chunks(), media_type="text/plain")


async def echo(websocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text("echo " + await websocket.receive_text())
    except Exception:
        pass


app = Starlette(routes=[Route("/hello", hello), Route("/stream", stream),
                        WebSocketRoute("/ws", echo)], lifespan=lifespan)
'''

FASTAPI = NOTE + '''
import contextlib

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse


@contextlib.asynccontextmanager
async def lifespan(app):
    note("startup", "fastapi")
    yield
    note("shutdown", "fastapi")


app = FastAPI(lifespan=lifespan)


@app.get("/hello")
async def hello(request: Request):
    return {"app": "fastapi", "root_path": request.scope["root_path"], "path": request.url.path}


@app.get("/stream")
async def stream():
    async def chunks():
        for i in range(3):
            yield f"chunk{i}\\n"
    return StreamingResponse(chunks(), media_type="text/plain")


@app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text("echo " + await websocket.receive_text())
    except WebSocketDisconnect as closed:
        note("disconnect", "fastapi", closed.code)
'''

DJANGO_SETTINGS = '''\
SECRET_KEY = "test"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djsite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
USE_TZ = True
'''

DJANGO_URLS = '''\
from django.http import HttpResponse
from django.urls import path


def who(request):
    return HttpResponse(f"django {request.META['SCRIPT_NAME']} {request.path_info} {request.path}")


urlpatterns = [path("who", who)]
'''

DJANGO_ASGI = '''\
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
application = get_asgi_application()
'''

WSGI = '''\
def app(environ, start_response):
    body = f"wsgi {environ['SCRIPT_NAME']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

FAILING = NOTE + '''
async def app(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    note("startup", "failing")
    await send({"type": "lifespan.startup.failed",
                "message": "Traceback (most recent call last):\\nRuntimeError: no database"})
'''


def write_apps(workdir: Path) -> None:
    """Write every app module (and the djsite package) into ``workdir``."""
    for name, text in (("rawapp", RAW), ("starletteapp", STARLETTE), ("fastapp", FASTAPI),
                       ("wsgiapp", WSGI), ("failapp", FAILING)):
        (workdir / f"{name}.py").write_text(text)
    package = workdir / "djsite"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(DJANGO_SETTINGS)
    (package / "urls.py").write_text(DJANGO_URLS)
    (package / "asgi.py").write_text(DJANGO_ASGI)


def lifespan_events(workdir: Path) -> list[list[str]]:
    """The lines of ``lifespan.log``, split into words."""
    path = workdir / "lifespan.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []
