"""Ending a command on its host when we stop waiting for it (a timeout, a cancelled task).

sshd does not end a command when its channel closes (without a pty it has nothing to hang up), so closing the
channel alone leaves a timed-out or aborted step running beside whatever comes next. sshd starts a command without
a pty in a new session (setsid), so the login shell leads its own process group; SSHPool.run wraps every command
so that its first line of output names that group (``wrap``), and ``stop_command`` kills the group.
"""

from __future__ import annotations

import asyncio

from controlroom.fleet.sshlib import asyncssh

STOP_BOUND = 5.0  # seconds a stop may take, at most
# TERM to the command's process group now, KILL 2 s later from the background (the stop does not wait for it: a
# killed group lingers as zombies until reaped, so waiting for it to vanish would cost the whole grace anyway).
# POSIX sh and bash alike: dash's kill has no `--`, and takes -N after the signal as a group.
_KILL_GROUP = (
    "kill -TERM -{pgid} 2>/dev/null || exit 0\n"
    "(sleep 2; kill -KILL -{pgid} 2>/dev/null) </dev/null >/dev/null 2>&1 &\n"
)


def wrap(command: str, mark: str) -> str:
    """``command`` preceded by a line ``MARK<pgid>`` on stdout (the shell's $$: it leads the process group)."""
    return f"echo {mark}$$\n{command}"


async def stop_command(
    conn: asyncssh.SSHClientConnection,
    proc: asyncssh.SSHClientProcess,
    pgid: asyncio.Future[int],
    reading: asyncio.Future | None,
) -> None:
    """End ``proc`` on the host, then close its channel; at most STOP_BOUND seconds, never raises.

    Two ways, both tried: the channel's "signal" request (OpenSSH 7.9 and later killpg() the session at once;
    older servers ignore it), and for any sshd a kill of the process group over a second channel, once ``pgid``
    (resolved by whoever reads stdout, ``reading``) is known. sshd refuses channels beyond MaxSessions (10) and
    counts sessions whose command still runs, so a refused second channel is tried again until the bound.
    """
    try:
        try:
            proc.send_signal("TERM")
        except Exception:  # noqa: BLE001 - a channel already closing: the group may still need the kill below
            pass
        async with asyncio.timeout(STOP_BOUND):
            if reading is not None and not pgid.done():
                # the host has not yet started the shell (or said its group): wait for it, reading on
                await asyncio.wait({pgid, reading}, return_when=asyncio.FIRST_COMPLETED)
            group = pgid.result() if pgid.done() else 0
            while group > 1:
                try:
                    await conn.run(_KILL_GROUP.format(pgid=group), check=False)
                    break
                except asyncssh.ChannelOpenError:
                    await asyncio.sleep(0.1)
    except Exception:  # noqa: BLE001 - best effort: the host or the connection may be gone
        pass
    finally:
        proc.close()
