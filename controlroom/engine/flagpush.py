"""The server's side of flags: a change pushed to every host over the warm pool, a receipt from each, stragglers
retried in the background, the fleet verified by hash, and the history in the journal.

A flag change never waits for the fleet lock or a running deploy: it takes neither, and its commands run on the
pool's priority lane (a channel per host of their own, so a deploy's commands never queue it). Two operators
changing one flag: each change names the version of the flag it was decided on (compare-and-set), and a change
decided on an older one is refused naming who changed it since.

Per host, pushes are ordered (a lock each) and always write the newest version meant for that host, so a slow
older push can never land after a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import secrets
import time
from dataclasses import replace

from controlroom.config.flags import Flag, flag_value
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError, UsageError
from controlroom.core.identity import Actor
from controlroom.core.text import clean
from controlroom.fleet import flagfile as fl
from controlroom.journal.flags import CONFIRMED, DISMISSED, FAILED, PENDING, FlagHistory, Receipt

BACKOFF = (0.5, 30.0)  # first retry after, longest wait between retries (seconds)


class FlagConflict(ControlroomError):
    """The flag changed after the operator looked at it: look again and confirm."""

    exit_code = 1


UNKNOWN, NOT_WRITTEN = "unknown", "not written"  # the classes a settlement after a crash gives


def flag_line(change: dict, confirmed: int, failed: list, *, settled: bool = False) -> str:
    """The deploy log's FLAG line of a change: ``new_search on -> off (why) 148/150``; settled after a crash, it
    names the hosts that could not be asked (unknown) and those the dead server never wrote."""
    text = f"{change['flag']} {change['old']} -> {change['new']}" + (
        f" ({change['reason']})" if change["reason"] else "") + f" {confirmed}/{change['hosts']}"
    if not settled:
        return text
    for cls in (NOT_WRITTEN, UNKNOWN):
        names = [f[0] for f in failed if f[1] == cls]
        if names:
            text += f", {len(names)} {cls}: " + ", ".join(names[:10]) + (
                f" and {len(names) - 10} more" if len(names) > 10 else "")
    return text + " (settled after a restart)"


class FlagService:
    """Owned by the server; every method runs on its event loop."""

    def __init__(self, cfg, pool, journal, *, backoff: tuple[float, float] = BACKOFF) -> None:
        self.cfg = cfg
        self.defined: tuple[Flag, ...] = cfg.flags.flags  # every configured Flag
        self.path = cfg.flags.file
        self.pool = pool
        self.journal = journal
        self.history = FlagHistory(journal)
        self.backoff = backoff
        self.hosts = tuple(h.name for h in cfg.hosts)
        self.lane = asyncio.Semaphore(max(1, cfg.ssh.max_parallel))
        self._host_locks: dict[str, asyncio.Lock] = {}
        self._retries: dict[str, asyncio.Task] = {}
        self._files: dict[int, fl.FlagsFile] = {}
        self._settling: asyncio.Task | None = None
        self.current = fl.initial(self.defined)
        self.flag_versions: dict[str, dict] = {}  # flag -> its last change (version, user, at, reason, old)
        for s in self.defined:
            last_of = self.history.changes(s.name, limit=1)
            if last_of:
                self.flag_versions[s.name] = last_of[0]
        last = self.history.changes(limit=1)
        if last:
            self.current = self._file_of(last[0])
        self.receipts = self.history.receipts()

    # ------------------------------------------------------------------------------------------ life
    def start(self) -> None:
        """Go on retrying the stragglers a previous server left (their receipts are in the journal), and give a
        straggler that comes back (a new connection to it) the current flags before anything else runs there."""
        self.pool.on_connect = self._came_back
        pending = self.history.pending()
        if pending:  # a previous server died mid-push: first ask the hosts what happened (the retries wait for it)
            self._settling = asyncio.ensure_future(self._settle(pending))
        busy = self.history.pushed_elsewhere()  # another bastion's server is pushing these: its hosts are its own
        for h, r in self.receipts.items():
            if r.status in (FAILED, PENDING) and h in self.hosts and r.version not in busy:
                self._retry_later(h)

    async def close(self) -> None:
        if self._settling is not None:
            self._settling.cancel()
            await asyncio.gather(self._settling, return_exceptions=True)
        for t in self._retries.values():
            t.cancel()
        await asyncio.gather(*self._retries.values(), return_exceptions=True)
        self._retries.clear()

    @property
    def retrying(self) -> list[str]:
        """The stragglers retried in the background; none while a settlement asks the hosts what they hold (its
        answer decides which hosts are stragglers; if this server stops meanwhile, the next one settles)."""
        if self.settling:
            return []
        return sorted(h for h, t in self._retries.items() if not t.done())

    @property
    def settling(self) -> bool:
        """Whether changes a dead server left pending are being settled now."""
        return self._settling is not None and not self._settling.done()

    # ------------------------------------------------------------------------------------------ reads
    def _file_of(self, change: dict) -> fl.FlagsFile:
        return fl.with_values(self.defined, change["state"], version=change["version"], by=change["user"],
                              at=change["at"])

    def file(self, version: int) -> fl.FlagsFile:
        if version == self.current.version:
            return self.current
        if version not in self._files:
            ch = self.j_change(version)
            self._files[version] = self._file_of(ch) if ch else fl.initial(self.defined)
        return self._files[version]

    def j_change(self, version: int) -> dict | None:
        found = self.history.changes(version=version, limit=1)
        return found[0] if found else None

    def flag(self, name: str) -> Flag:
        """The flag of that name; UsageError (exit 2) with a did-you-mean when there is none."""
        s = self.cfg.flags.flag(name)
        if s is None:
            raise UsageError(unknown_flag(name, [x.name for x in self.defined]))
        return s

    def _hosts(self, hosts: list[str] | None) -> list[str]:
        if hosts is None:
            return list(self.hosts)
        if not isinstance(hosts, list | tuple):
            raise UsageError("hosts must be a list of host names")
        known = set(self.hosts)
        names = [str(h) for h in hosts]
        bad = [h for h in names if h not in known]
        if bad or not names:
            raise UsageError(f"not hosts of the inventory: {clean(', '.join(bad[:5]), 200)}" if bad else "no hosts")
        return names

    def fleet_receipt(self, version: int) -> dict:
        """Of the hosts a change of this version (or a later one) went to: how many confirmed, and who did not."""
        rs = [r for r in self.receipts.values() if r.version >= version and r.host in self.hosts]
        bad = sorted((r for r in rs if r.status != CONFIRMED), key=lambda r: r.host)
        return {"confirmed": len(rs) - len(bad), "total": len(rs),
                "failed": [[r.host, r.cls or r.status, r.reason] for r in bad]}

    def state(self) -> dict:
        """Everything a flags pane or `controlroom flags` shows, as plain data."""
        out = []
        for s in self.defined:
            ch = self.flag_versions.get(s.name)
            v = ch["version"] if ch else 0
            out.append({
                "name": s.name, "kind": s.kind, "description": s.description, "default": s.default,
                "value": self.current.flags[s.name].enabled, "users": list(s.users), "groups": list(s.groups),
                "version": v, "changed_by": ch["user"] if ch else "", "changed_at": ch["at"] if ch else 0.0,
                "reason": ch["reason"] if ch else "", "receipt": self.fleet_receipt(v) if ch else None,
            })
        return {"version": self.current.version, "file": self.path, "flags": out, "retrying": self.retrying,
                "hosts": len(self.hosts), "settling": self.settling}

    # ------------------------------------------------------------------------------------------ change
    async def change(self, name: str, value: str, actor: Actor, *, reason: str = "", expect: int | None = None,
                     hosts: list[str] | None = None) -> dict:
        """Set one flag, by ``actor``, and push the new file to ``hosts`` (default: all); return the receipt once
        every host confirmed or failed. ``expect``: the flag's version the operator decided on (compare-and-set)."""
        user = actor.user
        flag = self.flag(name)
        await self.settled()
        try:
            value = flag_value(value)
        except ValueError as e:
            raise UsageError(f"{name}: {e}") from None
        last = self.flag_versions.get(name)
        now_v = last["version"] if last else 0
        if expect is not None and int(expect) != now_v:
            when = time.strftime("%H:%M:%S", time.localtime(last["at"])) if last else "?"
            raise FlagConflict(f"{name} was changed by {last['user'] if last else '?'} at {when} (now "
                               f"{self.current.flags[name].enabled}, version {now_v}) after you looked at "
                               f"version {expect}; look again and confirm")
        targets = self._hosts(hosts)
        old = self.current.flags[name].enabled
        reason = clean(reason.strip(), 300)
        new = fl.with_values(self.defined, {**self.current.values(), name: value},
                             version=self.current.version + 1, by=user, at=time.time())
        change = {"version": new.version, "user": user, "at": new.changed_at, "reason": reason, "old": old,
                  "new": value, "flag": name, "hosts": len(targets)}
        sha = new.sha256()
        pending = [Receipt(h, new.version, sha, PENDING, at=time.time()) for h in targets]
        # on the record before any host is written: the change as pending, each target's receipt as pending
        self.history.begun({**change, "new": new.flags[name].enabled, "state": new.values()}, pending, ev.FlagChanged(
            0, flag=name, old=old, new=value, user=user, reason=reason, version=new.version, confirmed=0,
            total=len(targets)))
        self.current = new
        self.flag_versions[name] = change
        self.receipts.update((r.host, r) for r in pending)
        t0 = time.monotonic()
        done = await asyncio.gather(*(self.push(h, save=False) for h in targets))
        seconds = time.monotonic() - t0
        failed = [[r.host, r.cls, r.reason] for r in done if r.status != CONFIRMED]
        confirmed = len(done) - len(failed)
        self.history.ended(change, confirmed, failed, [self.receipts[h] for h in targets],
                           line=flag_line(change, confirmed, failed), actor=actor)
        for h, *_ in failed:
            self._retry_later(h)
        return {"flag": name, "kind": flag.kind, "old": old, "new": value, "version": new.version,
                "confirmed": confirmed, "total": len(targets), "failed": failed, "seconds": seconds}

    def _set(self, r: Receipt) -> None:
        self.receipts[r.host] = r
        self.history.save(r)

    async def push(self, host: str, save: bool = True) -> Receipt:
        """Write the newest version meant for ``host`` there; its receipt (kept, and journaled unless not save:
        the caller saves a whole fleet's at once)."""
        async with self._host_locks.setdefault(host, asyncio.Lock()):
            target = self.receipts[host]
            if target.status == CONFIRMED:
                return target  # a newer push already landed it while this one waited
            f = self.file(target.version)
            data = f.render()
            sha = hashlib.sha256(data).hexdigest()
            cmd = fl.push_command(self.path, data, secrets.token_hex(4), self.cfg.flags.reload)
            async with self.lane:
                res = await self.pool.run(host, cmd, timeout=self.cfg.ssh.command_timeout, priority=True)
            got = fl.reported_hash(res.stdout)
            if res.ok and got == sha:
                r = Receipt(host, target.version, sha, CONFIRMED, at=time.time())
            elif got == sha:
                last = res.stderr.rsplit("\n", 1)[-1] if res.stderr else ""
                r = Receipt(host, target.version, sha, FAILED, "reload", clean(f"reload {res.label}: {last}", 200),
                            time.time())
            elif res.ok:
                r = Receipt(host, target.version, sha, FAILED, "hash",
                            f"the file there hashes to {got}" if got else
                            "its answer holds no hash in the shape controlroom prints", time.time())
            else:
                why = res.reason if res.status != "exit" else (res.stderr.rsplit("\n", 1)[-1] or res.reason)
                r = Receipt(host, target.version, sha, FAILED, res.label, clean(why, 200), time.time())
            if self.receipts.get(host) == target:  # not superseded while it ran
                self.receipts[host] = r
                if save:
                    self.history.save(r)
            return r

    # ------------------------------------------------------------------------------------------ stragglers
    async def _came_back(self, host: str) -> None:
        r = self.receipts.get(host)
        lock = self._host_locks.get(host)
        if r is None or r.status not in (FAILED, PENDING) or (lock is not None and lock.locked()):
            return  # nothing owed, or this connection is a push's own
        with contextlib.suppress(Exception):
            if (await self.push(host)).status == CONFIRMED:
                self._count_late(self.receipts[host])

    def _retry_later(self, host: str) -> None:
        t = self._retries.get(host)
        if t is None or t.done():
            self._retries[host] = asyncio.ensure_future(self._retry(host))

    async def _retry(self, host: str) -> None:
        """Retry with backoff until the host confirms or the operator dismisses it."""
        await self.settled()
        delay = self.backoff[0]
        r = self.receipts.get(host)
        while r is not None and r.status not in (CONFIRMED, DISMISSED):  # settled as confirmed, or dismissed
            await asyncio.sleep(delay)
            r = self.receipts.get(host)
            if r is None or r.status in (CONFIRMED, DISMISSED):
                return
            try:
                got = await self.push(host)
            except ControlroomError:  # the journal could not keep its receipt (a full disk): try again later
                delay = min(delay * 2, self.backoff[1])
                continue
            if got.status == CONFIRMED:
                self._count_late(got)
                return
            delay = min(delay * 2, self.backoff[1])

    def _count_late(self, r: Receipt) -> None:
        with contextlib.suppress(ControlroomError):
            ch = self.j_change(r.version)
            if ch:
                failed = [f for f in ch["failed"] if f[0] != r.host]
                self.history.finished(r.version, ch["confirmed"] + (len(failed) != len(ch["failed"])), failed)
                self._announce(r.version)

    def _announce(self, version: int) -> None:
        """Tell every client (numbered, through the journal) how the change of this version stands now."""
        with contextlib.suppress(ControlroomError):
            ch = self.j_change(version)
            if ch:
                self.journal.record(ev.FlagChanged(
                    0, flag=ch["flag"], old=ch["old"], new=ch["new"], user=ch["user"], reason=ch["reason"],
                    version=version, confirmed=ch["confirmed"], total=ch["hosts"],
                    failed=tuple(tuple(f) for f in ch["failed"])))

    def dismiss(self, hosts: list[str]) -> list[str]:
        """Stop retrying these hosts (all stragglers when empty); the hosts dismissed."""
        out = []
        for h in hosts or self.retrying:
            r = self.receipts.get(h)
            if r is not None and r.status in (FAILED, PENDING):
                self._set(replace(r, status=DISMISSED))
                out.append(h)
            t = self._retries.pop(h, None)
            if t is not None:
                t.cancel()
        for v in sorted({self.receipts[h].version for h in out}):
            self._announce(v)
        return out

    # ------------------------------------------------------------------------------------------ after a crash
    async def settled(self) -> None:
        """Return once the changes a dead server left pending are settled (at once when there are none)."""
        if self.settling:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._settling)

    async def _settle(self, pending: list[dict]) -> None:
        """A previous server died while pushing these changes: ask each host they went to for its flags file's
        hash (over the pool, with the usual timeouts), then record and log what happened; a host that cannot be
        asked stays unknown, named, and like one the dead server never wrote it is retried in the background."""
        low = min(c["version"] for c in pending)
        asked = sorted(h for h, r in self.receipts.items()
                       if r.version >= low and r.status == PENDING and h in self.hosts)
        version_of = {r.sha256: r.version for r in self.receipts.values()}
        cmd = fl.verify_command(self.path)

        async def ask(h: str) -> tuple[str, Receipt]:
            async with self._host_locks.setdefault(h, asyncio.Lock()):  # no push there meanwhile (_came_back)
                r = self.receipts[h]
                async with self.lane:
                    res = await self.pool.run(h, cmd, timeout=self.cfg.ssh.command_timeout, priority=True)
                got = fl.reported_hash(res.stdout) if res.ok else None
                if got == r.sha256:
                    return got, replace(r, status=CONFIRMED, at=time.time())
                if got is None:
                    why = res.stderr.rsplit("\n", 1)[-1] if res.status == "exit" and res.stderr else res.reason
                    return "", replace(r, status=FAILED, cls=UNKNOWN, at=time.time(),
                                       reason=clean(f"could not be asked after a restart: {res.label} {why}", 200))
                held = version_of.get(got)
                return got, replace(r, status=FAILED, cls=NOT_WRITTEN, at=time.time(), reason=(
                    f"the server stopped before writing it; the host holds version {held}" if held is not None
                    else "the server stopped before writing it; the host holds another flags file"))

        answers = dict(zip(asked, await asyncio.gather(*(ask(h) for h in asked)), strict=True))
        for h, (_, r) in answers.items():
            self.receipts[h] = r
        for change in pending:
            v = change["version"]
            on, failed = 0, []
            for h in sorted(h for h, r in self.receipts.items() if r.version >= v and h in self.hosts):
                # a host asked holds this change if it holds this version or a later one (each is built on the last)
                got, r = answers.get(h, ("", self.receipts[h]))
                if (version_of.get(got, -1) >= v) if h in answers else r.status == CONFIRMED:
                    on += 1
                else:
                    failed.append([h, r.cls or r.status, r.reason])
            self.history.ended(change, on, failed, [answers[h][1] for h in answers if answers[h][1].version == v],
                               line=flag_line(change, on, failed, settled=True),
                               actor=Actor(change["user"]))  # where they acted from died with that server

    # ------------------------------------------------------------------------------------------ verify
    async def verify(self, hosts: list[str] | None = None) -> list[dict]:
        """Read every host's flags file hash back; one row a host: ok, drifted, missing, unpushed or why it could
        not be read. A host is compared with what it was last sent (or the current file, never sent)."""
        names = self._hosts(hosts)
        cmd = fl.verify_command(self.path)

        async def one(h: str) -> dict:
            async with self.lane:
                res = await self.pool.run(h, cmd, timeout=self.cfg.ssh.command_timeout, priority=True)
            r = self.receipts.get(h)
            want = r.sha256 if r is not None else None
            got = fl.reported_hash(res.stdout) if res.ok else None
            if not res.ok or got is None:
                why = res.stderr.rsplit("\n", 1)[-1] if res.status == "exit" and res.stderr else res.reason
                return {"host": h, "status": res.label if not res.ok else "unreadable", "reason": clean(why, 200)}
            if want is None:
                return {"host": h, "status": "unpushed" if got == "missing" else "drifted",
                        "reason": "no flags file yet" if got == "missing" else "a flags file this server never sent"}
            if got == want:
                return {"host": h, "status": "ok", "version": r.version, "reason": ""}
            if got == "missing":
                return {"host": h, "status": "missing", "reason": f"no {self.path} (version {r.version} was sent)"}
            return {"host": h, "status": "drifted", "reason": f"{self.path} differs from version {r.version} "
                                                              f"(sha256 {got[:12]})"}

        return list(await asyncio.gather(*(one(h) for h in names)))


def unknown_flag(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listed = ", ".join(known) if known else "none: add [flags.NAME] tables to the config"
    return f"no flag {clean(name, 60)!r}{hint} (flags: {listed})"
