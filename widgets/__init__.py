"""Textual widgets for controlroom, one pane a module.

May import: controlroom.core, controlroom.engine.board (the board and its data), controlroom.sources.stagediff
(the staging diff's data), and Textual. Never journal, server, cli or app: a widget is given what it shows.
"""
