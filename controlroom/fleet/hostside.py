"""What the engine leaves on each host so that a step runs exactly once, whoever asks.

Two small files in the deploy user's home, written by the same shell that runs the step (no extra round trip):

- ``~/.controlroom-lease``: "OPERATION JOURNAL WHO". An operation (a deploy, its resumes and its rollback share the
  deploy's globally unique id) takes it before its first step on the host and keeps it until the operation ends.
  A command of another operation finds it and refuses (exit 75, "controlroom-held: ..."), so two deploys from two
  journals never run on one host at once. A lease left by a dead operation of the same journal may be broken: the
  journal's fleet lock (an OS lock) proves that operation is gone. On a shared journal the lease has a fourth
  field, the deploy's driver epoch (each bastion that takes the deploy's lock gets a newer one): a driver of the
  deploy older than the lease is refused (exit 75, "controlroom-fenced: ..."), so a bastion that lost the deploy to
  another runs nothing more there.
- ``~/.controlroom-step``: "DEPLOY STEP PREVIOUS", the receipt. Written as "DEPLOY 0 PREVIOUS" before the first
  step runs (so the host's previous revision is on the host's own record before any step can finish), then
  "DEPLOY K PREVIOUS" the moment step K succeeds. Each step's wrapper reads it first and does not run a step the
  receipt says is done, so a retry, a resume or a second journal's confusion can never run a step twice. A receipt
  of another deploy is never trusted: the deploy id is a uuid, not a journal's local number.

Every value that reaches the shell here is shell-quoted; the wrappers use only shell builtins (no extra process on
the host) except in ``release_command``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from controlroom.config.revision import revision_problem
from controlroom.core.text import clean

LEASE = ".controlroom-lease"
RECEIPT = ".controlroom-step"
RUNNING = ".controlroom-running"  # the pid of the shell running a step now; emptied when the step ends
HELD_EXIT = 75  # EX_TEMPFAIL: another operation holds this host
HELD_MARK = "controlroom-held:"
FENCED_MARK = "controlroom-fenced:"  # this driver's epoch is older than the lease's: the deploy was taken over
SKIP_MARK = "controlroom-done:"  # a step the receipt says is finished; not run again
LIVE_MARK = "controlroom-live:"  # the host's live revision, reported before the first step
RECEIPT_MARK = "controlroom-receipt:"  # receipt_command's line of the receipt (the file's first line, bounded)
LEASE_MARK = "controlroom-lease:"  # and of the lease
RUNNING_MARK = "controlroom-running:"
UNKNOWN_EXIT = 76  # this deploy's receipt is in a shape controlroom never writes: no step runs on it
SHOWN = 300  # characters of a lease or receipt line a host prints back (the shell cuts it: printf %.300s)
_TOKEN = re.compile(r"^[A-Za-z0-9._@:/+-]{1,200}$")


def is_token(text: str) -> bool:
    """A revision, user or id as controlroom writes them on a host: no spaces, no control characters, bounded."""
    return bool(_TOKEN.match(text))


# what in a step's own text could end or change the shell that writes the receipt after it: such a step runs in a
# subshell (one more process on the host); any other runs in a brace group (none). `cd` and `HOME=` are harmless:
# the receipt's path is taken before the step runs.
_SHELL_CHANGING = re.compile(r"(?<![\w.-])(exit|exec|set|trap|return|source|eval|shopt|ulimit|umask|readonly|unset)"
                             r"(?![\w.-])|(^|[\s;&|(){}])\.(\s|$)")


def isolated(cmd: str) -> str:
    """The step as a compound command that hands its exit status back to our shell, whatever it does."""
    if _SHELL_CHANGING.search(cmd):
        return f"( {cmd}\n)"
    return f"{{ {cmd}\n}}"


def _tok(value: str) -> str:
    """A lease/receipt field: one shell word with no spaces; anything else is replaced (it is only a label)."""
    value = re.sub(r"[^A-Za-z0-9._@:/+-]", "_", value or "-")[:200]
    return value or "-"


@dataclass(frozen=True)
class Operation:
    """Who is acting on the fleet: the deploy's uuid, the journal's id, and the person (for the holder's name)."""

    uuid: str
    journal: str
    who: str
    force: bool = False  # --force --reason: break any lease, even another journal's
    # the deploy's driver epoch on a shared journal (bumped by each bastion that takes the deploy's fleet lock): a
    # host whose lease of this deploy has a newer one refuses this driver. 0: not fenced (a SQLite journal), and
    # the lease keeps its three fields.
    epoch: int = 0

    def lease_line(self) -> str:
        """The lease as written on the host: "UUID JOURNAL WHO", then " EPOCH" when fenced."""
        line = f"{_tok(self.uuid)} {_tok(self.journal)} {_tok(self.who)}"
        return f"{line} {self.epoch}" if self.epoch else line

    def lease_check(self) -> str:
        """Shell text that takes (or confirms) this operation's lease, or exits 75 naming the holder.

        noclobber makes the write an atomic create. When the file exists, its holder decides: this operation goes
        on, a dead operation of the same journal (or any, with force) is replaced, anyone else refuses. A file
        that vanished (its holder let go) or is still empty (its holder is writing it) is looked at again.

        A lease of this deploy with a driver epoch newer than ours (another bastion took the deploy over) refuses
        this driver (exit 75, FENCED_MARK and that lease); one with an older epoch is replaced by ours.
        """
        mine = shlex.quote(self.lease_line())
        ours = "*" if self.force else f'*" {_tok(self.journal)} "*'
        return (
            f'cr_l="$HOME/{LEASE}"; cr_i=0\n'
            f"while :; do\n"
            f"  set -C; if {{ printf '%s\\n' {mine} > \"$cr_l\"; }} 2>/dev/null; then set +C; break; fi\n"
            f'  set +C; cr_h=; {{ read -r cr_h < "$cr_l"; }} 2>/dev/null || :\n'
            f'  case "$cr_h " in\n'
            f"    {_tok(self.uuid)}\" \"*) {self._same_deploy(mine)} ;;\n"
            f'    " ") cr_i=$((cr_i + 1)); [ "$cr_i" -lt 100 ] && continue ;;\n'
            f"    {ours}) ;;\n"
            f'    *) printf \'%s%.{SHOWN}s\\n\' {HELD_MARK} "$cr_h"; exit {HELD_EXIT} ;;\n'
            f"  esac\n"
            f"  printf '%s\\n' {mine} > \"$cr_l\"; break\n"
            f"done\n"
        )

    def _same_deploy(self, mine: str) -> str:
        """The lease is this deploy's: go on, unless its epoch says another driver took the deploy over."""
        if not self.epoch:
            return "break"
        # the lease's fourth field; none (a lease written unfenced) or anything but a bounded number counts as 0
        return (f'cr_e=${{cr_h##* }}; case "$cr_h" in *" "*" "*" "*) ;; *) cr_e=0 ;; esac\n'
                f'      case "$cr_e" in ""|*[!0-9]*|??????????*) cr_e=0 ;; esac\n'
                f"      if [ \"$cr_e\" -gt {self.epoch} ]; then printf '%s%.{SHOWN}s\\n' {FENCED_MARK} \"$cr_h\";"
                f" exit {HELD_EXIT}; fi\n"
                f"      [ \"$cr_e\" -lt {self.epoch} ] && printf '%s\\n' {mine} > \"$cr_l\"; break")


def step_command(op: Operation, k: int, cmd: str, *, live_command: str | None = None, release: bool = False) -> str:
    """Step k of the deploy ``op.uuid``, run once: skipped when the receipt says it is done.

    With live_command (the host's first step of this deploy), the host first reports its live revision and the
    receipt records it as the previous revision before the step runs, unless a receipt of this deploy has it.
    A step that could end or change our shell (``exit 0``, ``exec``, ``set -e``, ...) runs in a subshell, so it
    cannot lose the receipt; a ``cd`` cannot either (the receipt's path is absolute). With release (the
    host's last command of the deploy), the lease is given back in the same round trip, whatever the step did.
    """
    uid = _tok(op.uuid)
    lines = [op.lease_check(), "cr_nl='\n'", f'cr_r="$HOME/{RECEIPT}"; cr_d=; cr_k=; cr_p=; [ -f "$cr_r" ] && read -r cr_d cr_k cr_p < "$cr_r" || :',
             f'[ "$cr_d" = {uid} ] || {{ cr_k=-1; cr_p=; }}',
             # a receipt of this deploy that is not "DEPLOY K PREVIOUS" as written here: whether a step ran is
             # unknown, so none runs (and the receipt is left as it is, for a person to look at)
             f'cr_u=; if [ "$cr_d" = {uid} ]; then case "$cr_k" in ""|*[!0-9]*|??????????*) cr_u=1 ;; esac\n'
             f'  case "$cr_p" in -*|*[!A-Za-z0-9._/-]*) cr_u=1; cr_p=none ;; esac; fi']
    if live_command is not None:
        # the last line of the live command's output; anything but a plain revision name is "none"
        lines.append(
            f'if [ "$cr_k" = -1 ] && [ -z "$cr_u" ]; then cr_p="$({{ {live_command}\n}} 2>/dev/null)"; cr_p="${{cr_p##*"$cr_nl"}}"\n'
            f'  case "$cr_p" in ""|-*|*[!A-Za-z0-9._/-]*) cr_p=none ;; esac\n'
            f"  printf '%s 0 %s\\n' {uid} \"$cr_p\" > \"$cr_r\"; cr_k=0; fi"
        )
        lines.append(f'echo "{LIVE_MARK}$cr_p"')
    lines.append(
        f'if [ -n "$cr_u" ]; then echo "unknown: ~/{RECEIPT} holds a receipt of this deploy in a shape controlroom '
        f'never writes, so whether step {k} ran is unknown and it does not run: look at the host" >&2\n'
        f'  cr_s={UNKNOWN_EXIT}\n'
        f'elif [ "$cr_k" -ge {k} ] 2>/dev/null; then echo "{SKIP_MARK}{k}"; cr_s=0; else\n'
        f'echo "$$" > "$HOME/{RUNNING}"\n'
        f"{isolated(cmd)} && printf '%s {k} %s\\n' {uid} \"$cr_p\" > \"$cr_r\"\n"
        f'cr_s=$?; : > "$HOME/{RUNNING}"; fi'
    )
    if release:
        lines.append(_release(op))
    lines.append("exit $cr_s")
    return "\n".join(lines)


def guarded(op: Operation, cmd: str, *, release: bool = False) -> str:
    """Any other command of the operation (health check, rollback step): under the lease, in a subshell; with
    release, the lease is given back when it ends."""
    if not release:
        return f"{op.lease_check()}{isolated(cmd)}"
    return f"{op.lease_check()}{isolated(cmd)}\ncr_s=$?; {_release(op)}; exit $cr_s"


def _release(op: Operation) -> str:
    return (f'cr_l="$HOME/{LEASE}"; cr_h=; [ -f "$cr_l" ] && read -r cr_h < "$cr_l" || :; '
            f'case "$cr_h " in {_tok(op.uuid)}" "*) rm -f "$cr_l" ;; esac')


def receipt_command(wait: float = 60) -> str:
    """Print the receipt and the lease (the first line of each, at most SHOWN characters, after RECEIPT_MARK and
    LEASE_MARK: nothing in either file can pass for another line), for reconciling after a crash.

    A step started by a process that died goes on running on the host (sshd does not stop it): first wait, up to
    ``wait`` seconds, for that step's shell to end, so its receipt says whether it finished and nothing runs beside
    it. Prints "controlroom-running:PID" instead of waiting longer.
    """
    rounds = max(1, int(wait * 10))
    return (
        f'cr_x=; [ -f "$HOME/{RUNNING}" ] && read -r cr_x < "$HOME/{RUNNING}" || :; cr_n=0\n'
        f'case "$cr_x" in *[!0-9]*|0*) cr_x= ;; esac\n'
        f'while [ -n "$cr_x" ] && [ "$cr_x" != "$$" ] && kill -0 "$cr_x" 2>/dev/null; do\n'
        f'  [ "$cr_n" -ge {rounds} ] && {{ echo "{RUNNING_MARK}$cr_x"; break; }}\n'
        f"  sleep 0.1; cr_n=$((cr_n + 1)); done\n"
        f'cr_a=; [ -f "$HOME/{RECEIPT}" ] && {{ read -r cr_a < "$HOME/{RECEIPT}" || :; }}\n'
        f'cr_b=; [ -f "$HOME/{LEASE}" ] && {{ read -r cr_b < "$HOME/{LEASE}" || :; }}\n'
        f"printf '%s%.{SHOWN}s\\n%s%.{SHOWN}s\\n' {RECEIPT_MARK} \"$cr_a\" {LEASE_MARK} \"$cr_b\""
    )


def release_command(op: Operation) -> str:
    """Give the host's lease back, only if this operation holds it."""
    return _release(op)


@dataclass(frozen=True)
class Receipt:
    """A host's receipt as read back. ``problem`` says why it is not in the shape controlroom writes (then
    ``step`` is -1 and ``previous`` None: it proves no step done and names no revision, whoever's it is)."""

    deploy: str
    step: int
    previous: str | None
    problem: str | None = None


def _marked(text: str, mark: str) -> str | None:
    for line in text.split("\n"):
        if line.startswith(mark):
            return line[len(mark):][:SHOWN]
    return None


def parse_receipt(text: str) -> Receipt | None:
    """The receipt in ``receipt_command``'s output, or None when the host has none. Checked for shape: a deploy
    id, a step number, a previous revision that is a plain name (or none); each field bounded. Whatever else a
    host holds there is a Receipt with a ``problem`` that counts no step as done; nothing in it raises."""
    line = _marked(text, RECEIPT_MARK)
    if line is None or not line.strip():
        return None
    fields = line.split()
    deploy = fields[0] if _TOKEN.fullmatch(fields[0]) else clean(fields[0], 40)
    step = fields[1] if len(fields) > 1 else ""
    prev = fields[2] if len(fields) > 2 else "none"
    problem = None
    if not _TOKEN.fullmatch(fields[0]):
        problem = f"its deploy id {deploy!r} is not one controlroom writes"
    elif not (step.isdigit() and len(step) <= 9):
        problem = f"its step {clean(step, 20)!r} is not a number"
    elif len(fields) > 3:
        problem = f"it has {len(fields)} fields, not 3"
    elif prev not in ("none", "-") and revision_problem(prev):
        problem = f"its previous revision {clean(prev, 40)!r} is not a revision name"
    if problem:
        return Receipt(deploy, -1, None, f"unknown: ~/{RECEIPT}: {problem}")
    return Receipt(deploy, int(step), None if prev in ("none", "-") else prev)


def still_running(stdout: str) -> str | None:
    """'pid N' when receipt_command gave up waiting for a step still running on the host."""
    for line in stdout.split("\n"):
        m = re.fullmatch(re.escape(RUNNING_MARK) + r"(\d{1,10})", line.strip())
        if m:
            return f"pid {m.group(1)}"
    return None


def fenced_by(stdout: str) -> str | None:
    """When a command refused because this deploy was taken over by a newer driver (FENCED_MARK): "WHO (driver
    epoch N)" from the host's lease, bounded and neutralised. None when the output holds no such refusal."""
    line = _marked(stdout, FENCED_MARK)
    if line is None:
        return None
    parts = line.split()
    if len(parts) == 4 and all(_TOKEN.fullmatch(p) for p in parts):
        return f"{parts[2]} (driver epoch {parts[3]})"
    return f"another driver ('{clean(line, 80)}')"


def held_by(stdout: str) -> str | None:
    """Who holds the host when a command refused because another operation holds it: "operation U of WHO
    (journal J)" from a lease in the shape controlroom writes, else "unknown: ..." saying what is wrong with it
    (bounded, control characters shown as text). None when the output holds no refusal."""
    line = _marked(stdout, HELD_MARK)
    if line is None:
        return None
    parts = line.split()
    if len(parts) == 4 and parts[3].isdigit():
        parts = parts[:3]  # a fenced lease: its driver epoch is no concern of another operation
    if len(parts) == 3 and all(_TOKEN.fullmatch(p) for p in parts):
        return f"operation {parts[0]} of {parts[2]} (journal {parts[1]})"
    why = (f"{len(parts)} field{'' if len(parts) == 1 else 's'}, not 3" if len(parts) != 3 else
           "a field holds characters controlroom never writes there")
    shown = clean(line, 80)
    return f"unknown: ~/{LEASE} holds no lease controlroom wrote ({why}): '{shown}'"
