"""Textual widgets for controlroom, one pane a module."""
