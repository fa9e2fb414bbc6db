"""The fleet as the engine reaches it: the asyncssh pool, ending a remote command, and the files the engine leaves
on each host (lease, receipt, flags file).

May import: controlroom.core, controlroom.config.
"""
