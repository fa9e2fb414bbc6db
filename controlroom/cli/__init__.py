"""`controlroom` and its subcommands: argparse, one module a command family, and the printers.

May import: everything but controlroom.app, which only cli.main reaches (lazily) to open the app.
"""
