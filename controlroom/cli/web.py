"""`controlroom web`: the control room in browsers, for watchers, served by textual-serve.

Each browser session runs the command line `controlroom --read-only` (the app, in a process of its own that
textual-serve starts with Textual's web driver), which connects to the control-room server as any app does and
says it is a web client, so presence shows it "(web)". Every browser is read-only: only `--allow-acting`, on a
loopback address and with a token (a person who reached it through `ssh -L`, so already has a shell on the
bastion, and holds the token other local users lack), runs the app able to act, as the user `controlroom web` runs
as and as [access] operators allows that user.

The door: the default address is loopback. Any other address needs `--token-file`; with a token, every HTTP request
and websocket handshake must carry it (the cookie, or `?token=` once, which sets the cookie and redirects to the
page without it). The token is compared in constant time and printed nowhere: not in a log line, an error or the
page. A request without it gets a 401 and nothing of the app. textual-serve is imported by this command only.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

from controlroom.core.errors import UsageError

DEFAULT_LISTEN = "127.0.0.1:8765"
COOKIE = "controlroom_token"
TITLE = "controlroom"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); a bad one is a usage error."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def read_token(path: str) -> str:
    """The token: the first word of the file's first line. What is wrong is said without the file's content."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--token-file {path}: cannot read it ({type(e).__name__})") from None
    words = text.strip().split()
    token = words[0] if words else ""
    if len(token) < 16:
        raise UsageError(f"--token-file {path}: the token must be at least 16 characters "
                         "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`)")
    return token


def app_command(config: str, read_only: bool) -> str:
    """The command line each browser session runs: the app, as a person would start it."""
    argv = [sys.executable, "-m", "controlroom.cli", "--config", str(Path(config).resolve())]
    if read_only:
        argv.append("--read-only")
    return shlex.join(argv)


def cmd_web(args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen)
    token = read_token(args.token_file) if args.token_file else None
    if token is None and not is_loopback(host):
        raise UsageError(f"--listen {args.listen}: a non-loopback address needs --token-file "
                         "(or listen on 127.0.0.1 and reach it with `ssh -L`)")
    if args.allow_acting and not is_loopback(host):
        raise UsageError("--allow-acting is for a loopback address only: a browser elsewhere is read-only")
    if args.allow_acting and token is None:  # every local user can reach a loopback port, not only its person
        raise UsageError("--allow-acting needs --token-file: any user on this machine can reach 127.0.0.1")
    if args.public_url and urlsplit(args.public_url).scheme not in ("http", "https"):
        raise UsageError(f"--public-url {args.public_url!r}: expected http://... or https://...")
    from controlroom.config import config as configs

    config = str(configs.load(getattr(args, "config", None)).path)  # a bad config: its line now, not in each tab
    try:
        import aiohttp_jinja2  # noqa: F401  (textual-serve's)
        from textual_serve.server import Server
    except ImportError:
        raise UsageError("`controlroom web` needs textual-serve: pip install 'controlroom[web]'") from None

    server = _web_server(Server)(
        app_command(config, read_only=not args.allow_acting), host=host, port=port, title=TITLE,
        public_url=args.public_url, token=token,
    )
    print(f"controlroom web: serving the control room on http://{_netloc(host, port)}/"
          f" ({'read-only' if not args.allow_acting else 'acting allowed'}"
          f"{', token required' if token else ''}); Ctrl+C stops", flush=True)
    server.serve()
    return 0


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _web_server(Server: type):
    """textual-serve's Server with the door in front: built here so textual-serve is imported by this command only."""
    from aiohttp import web

    class WebServer(Server):
        def __init__(self, command: str, *, host: str, port: int, title: str, public_url: str | None,
                     token: str | None) -> None:
            super().__init__(command, host=host, port=port, title=title, public_url=public_url)
            self.fixed_url = public_url  # None: the page's URLs are made from the request's own Host
            self._token = token.encode() if token is not None else None
            self.secure = (public_url or "").startswith("https:")

        def initialize_logging(self) -> None:  # textual-serve's request log would carry ?token=: none
            import logging

            logging.basicConfig(level=logging.WARNING, format="controlroom web: %(message)s")

        async def on_startup(self, app) -> None:  # no logo; the one line was printed before
            pass

        async def _make_app(self):
            app = await super()._make_app()
            app.middlewares.insert(0, self._door)
            return app

        def _holds(self, offered: str | None) -> bool:
            return offered is not None and hmac.compare_digest(offered.encode(), self._token)

        @web.middleware
        async def _door(self, request, handler):
            """Every request and websocket handshake: the token (when there is one), and for the websocket a page
            of our own origin (a page elsewhere cannot drive a session with the watcher's cookie)."""
            if self._token is not None:
                if not self._holds(request.cookies.get(COOKIE)):
                    if not self._holds(request.query.get("token")):
                        return web.Response(status=401, text="controlroom web: a token is needed\n",
                                            headers={"Cache-Control": "no-store"})
                    if request.path == "/" and request.method == "GET":  # once: a cookie, and the URL without it
                        resp = web.Response(status=303, headers={"Location": "/"})
                        resp.set_cookie(COOKIE, self._token.decode(), httponly=True, samesite="Strict",
                                        secure=self.secure, path="/")
                        resp.headers["Cache-Control"] = "no-store"
                        return resp
            if request.path == "/ws":
                origin = request.headers.get("Origin")
                allowed = {request.host} | ({urlsplit(self.fixed_url).netloc} if self.fixed_url else set())
                if origin is not None and urlsplit(origin).netloc not in allowed:
                    return web.Response(status=403, text="controlroom web: not from this page\n")
            resp = await handler(request)
            if request.path == "/":
                resp.headers["Cache-Control"] = "no-store"
                resp.headers["Referrer-Policy"] = "no-referrer"
            return resp

        async def handle_index(self, request):
            # the page names its websocket and statics by absolute URLs: the public URL given, else the address
            # this browser used (so 127.0.0.1 through `ssh -L` and a name behind a proxy both work)
            # (no await between setting it and the template's context being made: one request's URL only)
            if self.fixed_url is None:
                self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

    return WebServer
