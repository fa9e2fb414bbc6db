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


class ConfigErrors(ConfigError):
    """Everything wrong with a config, found in one reading. str() is the first error, so a command that shows one
    line shows the same line `check` shows first; ``errors`` holds them all, bad values before missing files."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__(str(errors[0]))
        self.errors = list(errors)


class JournalError(ControlroomError):
    """The journal (STATE_DIR/journal.db) cannot be read or written; the message names the path and what to do."""

    exit_code = 1


class DeployLost(JournalError):
    """This bastion no longer drives the deploy (its fleet lock's session ended, or another bastion took the deploy
    over on a shared journal): it acts on nothing more for it."""

    exit_code = 1


class JournalSetupError(JournalError):
    """The journal will not be used as it is (world-writable, or written by a newer controlroom); nothing changed."""

    exit_code = 2
