"""The Textual app: the screens, the per-pane controllers, the link to the server.

May import: controlroom.core, config, engine, sources, the server's client side (server.client, server.protocol,
server.wire; never server.server, ops, notify...), widgets, and Textual.
"""
