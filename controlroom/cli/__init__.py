"""`controlroom` and its subcommands: argparse, one module a command family, and the printers.

May import: everything but controlroom.app, which only cli.main and cli.demo reach, lazily, in the command that
opens the app. A command's module is imported when that command runs, not to build the parser.
"""
