"""Every error controlroom raises on purpose derives from ControlroomError.

Its message is what the operator reads: one line, naming the file and key or the host and reason.
"""


class ControlroomError(Exception):
    """An error whose message is shown to the user as is; exit_code is the process exit status."""

    exit_code = 1


class UsageError(ControlroomError):
    """Bad command-line usage."""

    exit_code = 2


class ConfigError(ControlroomError):
    """A config file that cannot be used; the message names file:line: key."""

    exit_code = 2


class LockedError(ControlroomError):
    """The fleet is locked (NO DEPLOY PLEASE) or another deploy holds it."""

    exit_code = 3
