"""The Textual app: the screens, the per-pane controllers, the link to the server.

May import: controlroom.core, config, engine (board), server (client, protocol), widgets, textual.
"""
