"""controlroom: a terminal release control room."""

__version__ = "0.1.0"
