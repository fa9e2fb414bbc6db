"""Chat announcements against real local servers: an HTTP server on 127.0.0.1 the test starts (the webhook), a TCP
listener (irkerd), a local command. The notifier reads a real journal; the deploy test runs the CLI on the
simulated fleet with the server it starts."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from controlroom.config.settings import NotifySettings
from controlroom.core.identity import Actor
from controlroom.journal.journal import Journal
from controlroom.server import notify
from controlroom.server.notify import Notifier
from tests.waiting import until, wait_for


class Hook:
    """A webhook on 127.0.0.1: answers each POST with the next of ``answers`` (status, headers) and then 200;
    a status of None never answers (a hang). ``texts`` holds what arrived with a 2xx answer, in order."""

    def __init__(self, answers=()) -> None:
        self.answers = list(answers)
        self.texts: list[str] = []
        self.posts = 0
        self.hold: asyncio.Event | None = None  # when given, every answer waits for it
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> Hook:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/services/T000/B000/s3cr3tTOKEN"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.posts += 1
                status, headers = self.answers.pop(0) if self.answers else (200, {})
                if status is None:
                    await asyncio.sleep(3600)
                if self.hold is not None:
                    await self.hold.wait()
                if status < 300:
                    self.texts.append(json.loads(body)["text"])
                extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\n{extra}\r\nok".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.tasks.discard(asyncio.current_task())


def lines(texts: list[str]) -> list[str]:
    return [line for t in texts for line in t.splitlines()]


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal.open(tmp_path / "state")
    yield j
    j.close()


def notifier(journal: Journal, channels, said: list[str], **kw) -> Notifier:
    kw.setdefault("backoff", 0.05)
    return Notifier(journal.path, channels, say=said.append, **kw)


async def test_a_webhook_answering_429_gets_the_message_after_retry_after_once(journal):
    said: list[str] = []
    async with Hook([(429, {"Retry-After": "1"})]) as hook:
        n = notifier(journal, [notify.Webhook(hook.url)], said)
        n.start()
        journal.add_log(Actor("mygrant"), "LOCK", "db migration")
        try:
            await until(lambda: hook.texts, what="the message after the 429")
        finally:
            await n.close()
    assert hook.texts == ["[mygrant] LOCK db migration"] and hook.posts == 2
    assert said == ["notify webhook: HTTP 429 (rate limited); trying again in 1 s"]


async def test_repeated_500s_are_given_up_after_a_bound_and_said_without_the_url(journal):
    said: list[str] = []
    async with Hook([(500, {})] * 10) as hook:
        n = notifier(journal, [notify.Webhook(hook.url)], said, attempts=3)
        n.start()
        journal.add_log(Actor("mygrant"), "UNLOCK", "")
        journal.add_log(Actor("mygrant"), "NOTE", "next")
        try:
            await until(lambda: any("gave up" in s for s in said), what="giving up")
        finally:
            await n.close()
    assert hook.posts == 3 and hook.texts == []
    assert said[-1] == "notify webhook: gave up on 2 log entries after 3 tries: HTTP 500"
    assert not any("s3cr3t" in s or "Traceback" in s for s in said)


async def test_a_hanging_webhook_times_out_and_the_next_message_still_goes(journal):
    said: list[str] = []
    async with Hook([(None, {})]) as hook:
        ch = notify.Webhook(hook.url, timeout=0.3)
        n = notifier(journal, [ch], said, attempts=1, interval=0.1)
        n.start()
        journal.add_log(Actor("mygrant"), "LOCK", "one")
        try:
            await until(lambda: said, what="the timeout")
            journal.add_log(Actor("mygrant"), "UNLOCK", "two")
            await until(lambda: hook.texts, what="the next message")
        finally:
            await n.close()
    assert said == ["notify webhook: gave up on 1 log entry after 1 try: no answer in 0.3 s"]
    assert hook.texts == ["[mygrant] UNLOCK two"]


async def test_a_refused_port_is_said_in_one_line_without_the_url(journal):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    said: list[str] = []
    n = notifier(journal, [notify.Webhook(f"http://127.0.0.1:{port}/hooks/s3cr3tTOKEN")], said, attempts=2)
    n.start()
    journal.add_log(Actor("mygrant"), "LOCK", "x")
    try:
        await until(lambda: any("gave up" in s for s in said), what="giving up")
    finally:
        await n.close()
    assert said[-1].startswith("notify webhook: gave up on 1 log entry after 2 tries: ConnectError")
    assert all("s3cr3t" not in s and "\n" not in s for s in said)


async def test_a_burst_of_50_events_arrives_as_a_few_messages_in_order(journal):
    said: list[str] = []
    async with Hook() as hook:
        n = notifier(journal, [notify.Webhook(hook.url)], said)
        n.start()
        for i in range(50):
            journal.add_log(Actor("mygrant"), "NOTE", f"event {i}")
        try:
            await until(lambda: len(lines(hook.texts)) >= 50, what="all 50 lines")
        finally:
            await n.close()
    assert lines(hook.texts) == [f"[mygrant] NOTE event {i}" for i in range(50)]
    assert 1 <= len(hook.texts) <= 3 and said == []


async def test_no_entry_is_lost_or_sent_twice_across_a_restart(journal):
    said: list[str] = []
    async with Hook() as hook:
        n = notifier(journal, [notify.Webhook(hook.url)], said, interval=0.1)
        n.start()
        journal.add_log(Actor("mygrant"), "NOTE", "before")
        await until(lambda: hook.texts, what="the first message")
        await n.close()
        journal.add_log(Actor("mygrant"), "NOTE", "while no server ran")  # e.g. a client after a crash
        n2 = notifier(journal, [notify.Webhook(hook.url)], said, interval=0.1)
        n2.start()
        journal.add_log(Actor("bob"), "NOTE", "after")
        try:
            await until(lambda: len(lines(hook.texts)) >= 3, what="the rest")
            journal.add_log(Actor("bob"), "NOTE", "last")  # anything sent twice would come before this one
            await until(lambda: lines(hook.texts)[-1:] == ["[bob] NOTE last"], what="the last")
        finally:
            await n2.close()
    assert lines(hook.texts) == ["[mygrant] NOTE before", "[mygrant] NOTE while no server ran", "[bob] NOTE after",
                                 "[bob] NOTE last"]


async def test_two_bastions_on_a_shared_journal_announce_each_entry_once_and_the_second_goes_on_when_the_first_ends(
        pg_url, tmp_path):
    said: list[str] = []
    j = Journal.open(tmp_path / "state-a", url=pg_url)
    try:
        async with Hook() as hook:
            first, second = (Notifier(Journal.open(tmp_path / f"state-{b}", url=pg_url).store,
                                      [notify.Webhook(hook.url)], say=said.append, interval=0.1, poll=0.05)
                             for b in ("a", "b"))
            first.start()
            second.start()  # both servers tail the journal; one announces
            for i in range(3):
                j.add_log(Actor("mygrant"), "NOTE", f"entry {i}")
            await until(lambda: len(lines(hook.texts)) >= 3, what="the first entries")
            await first.close()  # bastion a's server stops: b's announces from where a got to
            j.add_log(Actor("bob"), "NOTE", "after")
            try:
                await until(lambda: lines(hook.texts)[-1:] == ["[bob] NOTE after"], what="b's announcement")
                j.add_log(Actor("bob"), "NOTE", "last")  # anything sent twice would come before this one
                await until(lambda: lines(hook.texts)[-1:] == ["[bob] NOTE last"], what="the last")
            finally:
                await second.close()
        assert lines(hook.texts) == [f"[mygrant] NOTE entry {i}" for i in range(3)] + [
            "[bob] NOTE after", "[bob] NOTE last"], said
    finally:
        j.close()


async def test_a_send_on_its_way_when_the_notifier_closes_is_finished_recorded_and_never_sent_again(journal):
    """A server that stops while a message is on its way (the webhook has it, its answer not back yet): the send
    finishes and is recorded, so the next server neither repeats it nor loses what came after."""
    said: list[str] = []
    async with Hook() as hook:
        hook.hold = asyncio.Event()
        n = notifier(journal, [notify.Webhook(hook.url)], said)
        n.start()
        journal.add_log(Actor("mygrant"), "NOTE", "on its way")
        await until(lambda: hook.posts == 1, what="the message to reach the webhook")
        closing = asyncio.ensure_future(n.close())
        await until(lambda: n.closing, what="the notifier to be closing")
        hook.hold.set()  # the webhook answers only now
        await asyncio.wait({closing}, timeout=20)
        assert closing.done(), "the notifier did not end when closed"
        hook.hold = None
        n2 = notifier(journal, [notify.Webhook(hook.url)], said)
        n2.start()
        journal.add_log(Actor("bob"), "NOTE", "after")
        try:
            await until(lambda: lines(hook.texts)[-1:] == ["[bob] NOTE after"], what="the next entry")
        finally:
            await n2.close()
    assert lines(hook.texts) == ["[mygrant] NOTE on its way", "[bob] NOTE after"]


async def test_irkerd_gets_one_json_line_per_entry_for_the_channel(journal):
    got: list[dict] = []

    async def irkerd(reader, writer):
        while line := await reader.readline():
            got.append(json.loads(line))
        writer.close()

    server = await asyncio.start_server(irkerd, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    said: list[str] = []
    n = notifier(journal, [notify.Irker(f"irc://127.0.0.1:{port}/#deploys")], said)
    n.start()
    journal.add_log(Actor("mygrant"), "LOCK", "db migration")
    journal.add_log(Actor("mygrant"), "UNLOCK", "")
    try:
        await until(lambda: len(got) >= 2, what="two irker lines")
    finally:
        await n.close()
        server.close()
    assert got == [{"to": f"irc://127.0.0.1:{port}/#deploys", "privmsg": "[mygrant] LOCK db migration"},
                   {"to": f"irc://127.0.0.1:{port}/#deploys", "privmsg": "[mygrant] UNLOCK"}]


async def test_a_command_gets_each_message_on_stdin_and_its_failure_is_one_line(journal, tmp_path):
    out = tmp_path / "chat.txt"
    said: list[str] = []
    n = notifier(journal, [notify.Command(f"cat >> {out}")], said)
    n.start()
    journal.add_log(Actor("mygrant"), "LOCK", "why\x1b[2J not")
    try:
        await until(lambda: out.exists() and out.read_text(), what="the command's file")
        # and the notifier has recorded it as sent, so the next one (same channel) starts after it
        await until(lambda: journal.db.execute("SELECT log_id FROM notify_sent WHERE channel = 'command'").fetchone()
                    == journal.db.execute("SELECT max(id) FROM log").fetchone(), what="the entry recorded as sent")
    finally:
        await n.close()
    assert out.read_text() == "[mygrant] LOCK why^[[2J not\n" or "\x1b" not in out.read_text()
    bad = notifier(journal, [notify.Command("echo nope >&2; exit 3")], said, attempts=1)
    bad.start()
    journal.add_log(Actor("mygrant"), "UNLOCK", "")
    try:
        await until(lambda: said, what="the failure")
    finally:
        await bad.close()
    assert said == ["notify command: gave up on 1 log entry after 1 try: the command exited 3: nope"]


async def test_with_a_shared_journal_the_notify_command_never_gets_the_journals_password(monkeypatch, tmp_path):
    monkeypatch.setenv("PGPASSWORD", "s3cret")
    monkeypatch.setenv("CR_OTHER", "kept")
    out = tmp_path / "env.txt"
    s = NotifySettings(command=f'echo "${{PGPASSWORD:-unset}} $CR_OTHER" >> {out}')
    (shared,) = notify.channels_of(s, "postgresql://db/cr")
    await shared.send("hi")
    (embedded,) = notify.channels_of(s)  # the SQLite journal: the command inherits everything, as before
    await embedded.send("hi")
    assert out.read_text().splitlines() == ["unset kept", "s3cret kept"]


def test_the_webhook_url_comes_from_the_named_variable_and_is_never_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("CR_HOOK", "https://hooks.example/s3cr3t")
    s = NotifySettings(webhook_env="CR_HOOK")
    assert s.webhook_url() == "https://hooks.example/s3cr3t"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in repr(notify.channels_of(s))
    monkeypatch.delenv("CR_HOOK")
    assert notify.channels_of(s) == []


def test_a_deploy_with_a_webhook_answering_429_finishes_and_the_announcements_arrive_in_order(fleet):
    from tests.cli.test_deploy_cli import cr

    said: list[str] = []
    loop = asyncio.new_event_loop()
    hook = Hook([(429, {"Retry-After": "1"})] * 3)
    loop.run_until_complete(hook.__aenter__())
    import threading

    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        cfg = fleet.dir / "hooked.toml"
        cfg.write_text((fleet.dir / "controlroom.toml").read_text() + '\n[notify]\nwebhook_env = "CR_TEST_HOOK"\n')
        env = {"CR_TEST_HOOK": hook.url}
        for args in (("lock", "warming up"), ("unlock",)):
            res = cr(fleet, *args, "-c", str(cfg), env=env)
            assert res.returncode == 0, res.stdout + res.stderr
        res = cr(fleet, "deploy", "--yes", "-c", str(cfg), env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        wait_for(lambda: any("DEPLOY OK" in line for line in lines(hook.texts)), 30, "DEPLOY OK at the hook", every=0.05)
    finally:
        asyncio.run_coroutine_threadsafe(hook.__aexit__(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()
    got = lines(hook.texts)
    kinds = [line.split("] ", 1)[1].split(" ")[0] for line in got]
    assert kinds.index("DEPLOY") < len(kinds) - 1 and got[-1].startswith("[mygrant] DEPLOY OK r2307")
    start = next(i for i, line in enumerate(got) if line.startswith("[mygrant] DEPLOY START r2306 -> r2307"))
    phases = [line for line in got if " PHASE DONE " in line]
    assert [line.split(":")[0] for line in phases] == [f"[mygrant] PHASE DONE r2307 {p}" for p in
                                                       ("canary", "stage 1", "stage 2")], got
    assert got.index(phases[0]) > start and got.index(phases[-1]) < len(got) - 1
    assert got[0] == "[mygrant] LOCK warming up" and got[1].startswith("[mygrant] UNLOCK"), got
    assert len(got) == len(set(got)) and said == [] and os.environ.get("CR_TEST_HOOK") is None


def test_notify_settings_that_cannot_work_are_config_errors_naming_the_key(tmp_path):
    from controlroom.config import config
    from controlroom.core.errors import ConfigError

    (tmp_path / "known_hosts").touch()
    base = '[inventory]\nhosts = ["web01"]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n'
    for notify_toml, says in (('webhook_env = "NOT A NAME"', "notify.webhook_env"),
                              ('irker = "http://irc.example/#ops"', "notify.irker"),
                              ('webhook = "ftp://x"', "notify.webhook")):
        path = tmp_path / "c.toml"
        path.write_text(base + f"[notify]\n{notify_toml}\n")
        with pytest.raises(ConfigError) as e:
            config.load(path)
        assert says in str(e.value) and e.value.exit_code == 2
    path.write_text(base + '[notify]\nwebhook_env = "CR_HOOK"\nirker = "irc://127.0.0.1/#ops"\ncommand = "cat"\n')
    n = config.load(path).notify
    assert (n.webhook_env, n.irker, n.command) == ("CR_HOOK", "irc://127.0.0.1/#ops", "cat")


def test_check_names_the_chat_channels_and_never_the_webhook_url(tmp_path):
    from tests.conftest import run_cli

    (tmp_path / "known_hosts").touch()
    (tmp_path / "controlroom.toml").write_text(
        '[inventory]\nhosts = ["web01"]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n'
        '[notify]\nwebhook_env = "CR_HOOK"\nirker = "irc://127.0.0.1/#ops"\n')
    res = run_cli("check", cwd=tmp_path, env={"CR_HOOK": "https://hooks.example/s3cr3t"})
    assert res.returncode == 0, res.stderr
    assert "notify: webhook from $CR_HOOK, irker" in res.stdout.splitlines()
    assert "s3cr3t" not in res.stdout + res.stderr


async def test_closing_the_notifier_ends_it_even_when_a_send_swallows_the_cancellation(journal):
    """Python 3.11's asyncio.wait_for loses a cancellation that lands as its inner await finishes (an irkerd closing
    its side just then); the server's shutdown must not wait for that channel forever (a CI run hung 300 s here)."""
    sent: list[str] = []
    entered = asyncio.Event()

    class Stubborn:
        name = "stubborn"

        async def send(self, text: str) -> None:
            entered.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # what the lost cancellation looks like from here
                sent.append(text)

        async def close(self) -> None:
            pass

    n = notifier(journal, [Stubborn()], [])
    n.start()
    journal.add_log(Actor("mygrant"), "LOCK", "db migration")
    await asyncio.wait_for(entered.wait(), 20)
    closing = asyncio.ensure_future(n.close())
    done, _ = await asyncio.wait({closing}, timeout=20)  # not wait_for: it has the very bug under test
    assert closing in done, "the notifier did not end when closed"
    assert sent == ["[mygrant] LOCK db migration"]


async def test_a_failing_channel_tells_its_listener_each_retry_and_the_give_up_in_one_line(journal):
    """What the server publishes to the app's status line: 'chat: webhook gave up after 2 tries (HTTP 500)'."""
    said: list[str] = []
    heard: list = []
    async with Hook([(500, {})] * 5) as hook:
        n = notifier(journal, [notify.Webhook(hook.url)], said, attempts=2, on_failure=heard.append)
        n.start()
        journal.add_log(Actor("mygrant"), "LOCK", "x")
        try:
            await until(lambda: any(e.gave_up for e in heard), what="giving up")
        finally:
            await n.close()
    assert [e.line() for e in heard] == ["chat: webhook failed (HTTP 500); trying again in 0.05 s",
                                                        "chat: webhook gave up after 2 tries (HTTP 500)"]
    from controlroom.core import events as ev

    assert ev.from_wire(json.loads(json.dumps(ev.to_wire(heard[-1])))) == heard[-1]  # it crosses the socket


async def test_a_listener_that_raises_never_stops_the_announcements(journal):
    said: list[str] = []

    def deaf(_e) -> None:
        raise RuntimeError("boom")

    async with Hook([(500, {})]) as hook:
        n = notifier(journal, [notify.Webhook(hook.url)], said, on_failure=deaf)
        n.start()
        journal.add_log(Actor("mygrant"), "LOCK", "still announced")
        try:
            await until(lambda: hook.texts, what="the message after the 500")
        finally:
            await n.close()
    assert hook.texts == ["[mygrant] LOCK still announced"]
    assert "notify webhook: could not tell the clients: RuntimeError: boom" in said
