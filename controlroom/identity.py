"""Who is at the keyboard, for the deploy log and the lock.

``SUDO_USER`` names the person behind a sudo session, but any process can set it: it is believed only when the real
uid is 0, that is when sudo (or root itself) started us. Everyone else is their login name.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping


def current_user(uid: int | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The person behind the session: SUDO_USER when the real uid is 0, else the login name.

    ``uid`` and ``environ`` default to this process's real uid and environment (parameters for tests).
    """
    env = os.environ if environ is None else environ
    real_uid = os.getuid() if uid is None else uid
    if real_uid == 0:
        sudo_user = env.get("SUDO_USER", "").strip()
        if sudo_user:
            return sudo_user
    try:
        return os.getlogin()
    except OSError:
        return getpass.getuser()


def current_origin(environ: Mapping[str, str] | None = None) -> str | None:
    """The SSH client address of this session, when there is one."""
    env = os.environ if environ is None else environ
    for var in ("SSH_CLIENT", "SSH_CONNECTION"):
        value = env.get(var)
        if value and value.split():
            return value.split()[0]
    return None
