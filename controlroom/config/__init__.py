"""controlroom.toml read once into frozen dataclasses: settings, flags, inventory and host patterns, phase plans,
the rules a revision name obeys. Errors name the file, line and key.

May import: controlroom.core.
"""
