"""Chat announcements: the deploy log, as it is written by every client, sent to a webhook, an irkerd, a command.

The notifier runs in the control-room server and tails the journal's ``log`` table, so what any client wrote
(and what was written while no server ran, or before a crash) is announced, each entry once: every channel
remembers the id of the last entry it sent (``notify_sent``), written right after the message went out.

A channel sends at most one message a second; entries that arrive meanwhile go out together, in order, as one
message. A webhook answering 429 is waited for as long as its ``Retry-After`` says (bounded); a 5xx, a timeout or
a refused connection is retried with backoff, and given up after ``attempts`` tries, which the server log says.
Nothing here is awaited by a deploy: the deploy writes the journal, the notifier reads it. The webhook URL is a
secret: it is never printed, and is cut out of any error text. Each failed try (and each give-up) also goes to
``on_failure`` as an AnnouncementFailed event, which the server publishes to the app's status line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controlroom.config.settings import NotifySettings
from controlroom.core.errors import JournalError
from controlroom.core.events import AnnouncementFailed
from controlroom.core.text import clean
from controlroom.journal import pg
from controlroom.journal.cursors import ChatCursors

INTERVAL = 1.0  # at most one message a second per channel
ATTEMPTS = 5  # tries of one message before it is given up
BACKOFF = 1.0  # seconds before the second try; doubled each time
MAX_RETRY_AFTER = 120.0  # a 429's Retry-After is honoured up to this
TIMEOUT = 10.0  # one send, its whole answer included
ANSWER_BYTES = 64 * 1024  # of a webhook's answer, at most this much is read
POLL = 0.25  # how often the journal is read for new entries
GATHER = 0.2  # after the first new entry, how long to wait for the rest of its burst
BATCH = 100  # entries in one message at most
IRKER_PORT = 6659
CLOSE_GRACE = 5.0  # at close, a send already on its way gets this long to finish and be recorded


class SendFailed(Exception):
    """One try failed; the message says why (never the webhook URL). ``final``: trying again cannot help."""

    def __init__(self, why: str, *, final: bool = False, retry_after: float | None = None) -> None:
        super().__init__(why)
        self.final = final
        self.retry_after = retry_after


# --------------------------------------------------------------------------------------------- channels


class Webhook:
    """Slack-compatible incoming webhook: POST {"text": ...} (Mattermost, Rocket.Chat, Discord's /slack take it)."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        self._url = url
        self.timeout = timeout
        self._client = None

    def __repr__(self) -> str:
        return "Webhook(<secret>)"

    def _scrub(self, text: str) -> str:
        parts = urlsplit(self._url)
        for secret in (self._url, parts.path, parts.query):
            if secret and len(secret) > 1:
                text = text.replace(secret, "<webhook>")
        return clean(text, 200)

    async def send(self, text: str) -> None:
        """POST the message. The answer is outside text too: it has a deadline for the whole of it (not each
        read), at most ANSWER_BYTES of its body are read (only the status counts), and a redirect is not
        followed (a final failure: the URL is wrong)."""
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        status = None
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("POST", self._url, json={"text": text}) as resp:
                    status, retry_after = resp.status_code, resp.headers.get("retry-after")
                    read = 0
                    async for chunk in resp.aiter_raw():  # read a short body to its end: the connection is kept
                        read += len(chunk)
                        if read > ANSWER_BYTES:
                            break  # the rest is never read: the connection is closed instead
        except TimeoutError:
            raise SendFailed(f"no {'whole ' if status is not None else ''}answer in {self.timeout:g} s") from None
        except httpx.TimeoutException:
            raise SendFailed(f"no answer in {self.timeout:g} s") from None
        except httpx.HTTPError as e:
            if isinstance(e, httpx.ConnectError) and _refused(e):
                raise SendFailed("ConnectError: connection refused") from None
            raise SendFailed(self._scrub(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)) from None
        if status < 300:
            return
        if status < 400:
            raise SendFailed(f"HTTP {status}: the webhook redirects, and redirects are not followed (set the "
                             "webhook to where it points)", final=True)
        if status == 429:
            raise SendFailed("HTTP 429 (rate limited)", retry_after=_retry_after(retry_after))
        raise SendFailed(f"HTTP {status}", final=400 <= status < 500)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _refused(e: BaseException) -> bool:
    """Whether a connect error came from a refused connection (httpx says only "All connection attempts failed")."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ConnectionRefusedError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return "connection refused" in str(e).lower() or "errno 111" in str(e).lower()


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value or 1)
    except ValueError:
        return 1.0  # an HTTP date or junk: a second, then we see
    if math.isnan(seconds):
        return 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Irker:
    """An irkerd: one JSON object a line, {"to": "irc://host/#channel", "privmsg": line}, over TCP.

    The irkerd is reached at the URL's host, on the URL's port or 6659; "to" is the URL as configured.
    """

    name = "irker"

    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        self.to = url
        self.host = parts.hostname or "localhost"
        self.port = parts.port or IRKER_PORT
        self.timeout = timeout

    async def send(self, text: str) -> None:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        except TimeoutError:
            raise SendFailed(f"irkerd at {self.host}:{self.port}: no answer in {self.timeout:g} s") from None
        except OSError as e:
            raise SendFailed(f"irkerd at {self.host}:{self.port}: {e.strerror or e}") from None
        try:
            for line in text.splitlines():
                writer.write((json.dumps({"to": self.to, "privmsg": line}) + "\n").encode())
            await asyncio.wait_for(writer.drain(), self.timeout)
        except (OSError, TimeoutError) as e:
            raise SendFailed(f"irkerd at {self.host}:{self.port}: {getattr(e, 'strerror', None) or 'write failed'}") from None
        finally:
            writer.close()
            with contextlib.suppress(Exception):  # an irkerd that never closes its side must not hold the queue
                await asyncio.wait_for(writer.wait_closed(), self.timeout)

    async def close(self) -> None:
        pass


class Command:
    """A local command, run by the shell with the message on its stdin; exit 0 means sent."""

    name = "command"

    def __init__(self, command: str, timeout: float = 30.0, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.timeout = timeout
        self.env = env  # None: this process's environment (pg.child_env: without a shared journal's password)

    async def send(self, text: str) -> None:
        try:
            proc = await asyncio.create_subprocess_shell(
                self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=self.env)
        except OSError as e:
            raise SendFailed(f"cannot run the command: {e.strerror or e}") from None
        try:
            _, err = await asyncio.wait_for(proc.communicate((text + "\n").encode()), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise SendFailed(f"the command did not finish in {self.timeout:g} s") from None
        if proc.returncode != 0:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise SendFailed(f"the command exited {proc.returncode}" + (f": {clean(last[0], 160)}" if last[0] else ""))

    async def close(self) -> None:
        pass


def channels_of(settings: NotifySettings, journal: str | None = None) -> list:
    """The channels [notify] configures (a webhook_env whose variable is unset configures none); ``journal``: the
    [state] journal URL (a shared journal's PGPASSWORD is not passed on to the command)."""
    out: list = []
    url = settings.webhook_url()
    if url:
        out.append(Webhook(url))
    if settings.irker:
        out.append(Irker(settings.irker))
    if settings.command:
        out.append(Command(settings.command, env=pg.child_env(journal)))
    return out


# --------------------------------------------------------------------------------------------- the notifier


def line_of(user: str, kind: str, text: str, revision: str | None) -> str:
    """One announcement line: who, what, the rest (clean: one line of harmless text)."""
    rev = f" {revision}" if revision and revision not in (text or "") else ""
    return clean(f"[{user}] {kind}{rev}" + (f" {text}" if text else ""), 400)


def phase_line(user: str | None, revision: str | None, data: str) -> str:
    """'[mygrant] PHASE DONE canary r2307: 2 done (1.2 s)' from a PhaseCompleted event's journaled data."""
    try:
        d = json.loads(data)
    except ValueError:
        d = {}
    counts = f"{d.get('done', '?')} done" + "".join(f", {d[k]} {k}" for k in ("failed", "skipped") if d.get(k))
    seconds = d.get("seconds")
    took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
    return line_of(user or "?", "PHASE DONE", f"{d.get('name', '?')}: {counts}{took}", revision)


def _stderr(msg: str) -> None:
    print(f"controlroom server: {msg}", file=sys.stderr, flush=True)


class Notifier:
    """Tails the deploy log of the journal at ``path`` and sends it to every channel. ``await run()`` until
    cancelled; ``close()`` stops it. Failures go to ``say`` (the server log), one line each."""

    def __init__(self, path: Path | Any, channels: list, *, say: Callable[[str], None] = _stderr,
                 on_failure: Callable[[AnnouncementFailed], None] | None = None,
                 interval: float = INTERVAL, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
                 poll: float = POLL, gather: float = GATHER) -> None:
        self.path = Path(path) if isinstance(path, (str, Path)) else path  # journal.db, or a Journal's store
        self.channels = channels
        self.say = say
        self.on_failure = on_failure  # the server publishes it to every client (the app's status line)
        self.interval, self.attempts, self.backoff, self.poll, self.gather = interval, attempts, backoff, poll, gather
        self._db: ChatCursors | None = None
        self._task: asyncio.Task | None = None
        self._cursors: dict[str, tuple[int, int]] = {}
        self._closing = False
        self._wake = asyncio.Event()  # set at close: every pause between sends ends at once

    @property
    def closing(self) -> bool:
        """close() has been called."""
        return self._closing

    def start(self) -> None:
        """Take each channel's place in the journal now (what is written from here on is announced), then tail
        it in a task."""
        if self.channels and self._task is None and self._open():
            self._task = asyncio.ensure_future(self.run())

    def _open(self) -> bool:
        try:
            self._db = ChatCursors(self.path)
            self._cursors = {ch.name: (self._last(ch.name, "log"), self._last(f"{ch.name}.events", "events"))
                             for ch in self.channels}
            return True
        except Exception as e:  # said once, in one line; the server goes on without chat
            self.say(f"notify: cannot read the journal, nothing will be announced: {clean(str(e), 300)}")
            if self._db is not None:
                self._db.close()
                self._db = None
            return False

    async def run(self) -> None:
        if self._db is None and not self._open():
            return
        try:
            await asyncio.gather(*(self._tail(ch) for ch in self.channels))
        except Exception as e:
            self.say(f"notify: stopped: {type(e).__name__}: {clean(str(e), 200)}")
        finally:
            self._db.close()
            self._db = None

    async def close(self) -> None:
        """Stop. A send already on its way may finish (CLOSE_GRACE) and is recorded, so the next start neither
        repeats it nor loses it; what was not sent yet waits in the journal for the next start."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait({task}, timeout=CLOSE_GRACE)
        # On Python 3.11 asyncio.wait_for can swallow a cancellation that lands as its inner await finishes (an
        # irkerd closing its side as we cancel): cancel again until the task has really ended, never wait on it blind.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task is not None and not task.cancelled():
            with contextlib.suppress(BaseException):
                task.result()
        for ch in self.channels:
            with contextlib.suppress(Exception):
                await ch.close()

    # ------------------------------------------------------------------------------------------ journal
    # Two cursors a channel: the deploy log, and the events table for what the log does not say (a phase done).
    def _last(self, key: str, table: str) -> int:
        assert self._db is not None
        return self._db.start(key, table)

    def _leads(self) -> bool:
        assert self._db is not None
        return self._db.leading()

    def _sent(self, key: str, log_id: int) -> None:
        assert self._db is not None
        self._db.sent(key, log_id)

    def _after(self, log_id: int, event_id: int) -> tuple[list[tuple[float, str]], int, int]:
        """(at, line) of the log entries and phase completions after the cursors, oldest first, and the new
        cursors; at most BATCH of each."""
        assert self._db is not None
        rows = self._db.log_after(log_id, BATCH)
        items = [(at, line_of(u, k, t, r)) for _, at, u, k, t, r in rows]
        if rows:
            log_id = rows[-1][0]
        evs = self._db.phases_after(event_id, BATCH)
        for _, at, data, user, revision in evs:
            items.append((at, phase_line(user, revision, data)))
        if evs:
            event_id = evs[-1][0]
        items.sort(key=lambda item: item[0])  # stable: entries of one table keep their order
        return items, log_id, event_id

    # ------------------------------------------------------------------------------------------ sending
    async def _tail(self, ch) -> None:
        log_key, ev_key = ch.name, f"{ch.name}.events"
        last, last_ev = self._cursors[ch.name]
        next_at = 0.0
        led = self._leads()  # the cursors were just read: good as they are
        while not self._closing:
            try:
                if not led:  # a shared journal another bastion's server announces: its turn may come
                    if not self._leads():
                        await self._pause(self.poll)
                        continue
                    last, last_ev = self._last(log_key, "log"), self._last(ev_key, "events")  # where it got to
                    led = True
                items, _, _ = self._after(last, last_ev)
                if items:
                    # the rest of a burst comes with its first entry: wait the gather time, or until one may go
                    await self._pause(max(self.gather, next_at - time.monotonic()))
                    if self._closing:
                        break
                    items, new_last, new_ev = self._after(last, last_ev)
            except JournalError as e:
                self.say(f"notify {ch.name}: cannot read the journal: {clean(str(e), 200)}")
                await self._pause(max(self.poll, 1.0))
                continue
            if not items:
                await self._pause(self.poll)
                continue
            if await self._deliver(ch, "\n".join(line for _, line in items), len(items)) is None:
                break  # closed between tries: not sent, so not recorded; the next start sends it
            last, last_ev = new_last, new_ev
            try:
                self._sent(log_key, last)
                self._sent(ev_key, last_ev)
            except JournalError as e:  # it was sent: go on; after a restart it may be sent again
                self.say(f"notify {ch.name}: cannot record what was sent: {clean(str(e), 200)}")
            next_at = time.monotonic() + self.interval

    async def _pause(self, seconds: float) -> None:
        """Sleep, or less when the notifier closes."""
        if seconds > 0 and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)

    async def _deliver(self, ch, text: str, entries: int) -> bool | None:
        """Send with retries; False when given up (said in the server log), None when closed before a retry."""
        tries = 0
        while True:
            tries += 1
            try:
                await ch.send(text)
                return True
            except SendFailed as e:
                if e.final or tries >= self.attempts:
                    self.say(f"notify {ch.name}: gave up on {entries} log entr{'y' if entries == 1 else 'ies'} "
                             f"after {tries} tr{'y' if tries == 1 else 'ies'}: {e}")
                    self._failed(ch.name, str(e), tries, True, 0.0, entries)
                    return False
                wait = e.retry_after if e.retry_after is not None else self.backoff * 2 ** (tries - 1)
                self.say(f"notify {ch.name}: {e}; trying again in {wait:g} s")
                self._failed(ch.name, str(e), tries, False, wait, entries)
                await self._pause(wait)
                if self._closing:
                    return None
            except Exception as e:  # a bug of a channel must not stop the others, nor show a traceback
                why = f"{type(e).__name__}: {clean(str(e), 160)}"
                self.say(f"notify {ch.name}: gave up on {entries} log entries: {why}")
                self._failed(ch.name, why, tries, True, 0.0, entries)
                return False

    def _failed(self, channel: str, reason: str, tries: int, gave_up: bool, retry_in: float, entries: int) -> None:
        if self.on_failure is None:
            return
        try:
            self.on_failure(AnnouncementFailed(0, channel=channel, reason=clean(reason, 200), tries=tries,
                                               gave_up=gave_up, retry_in=retry_in, entries=entries))
        except Exception as e:  # noqa: BLE001 - whoever listens must not stop the announcements
            self.say(f"notify {channel}: could not tell the clients: {type(e).__name__}: {clean(str(e), 160)}")

