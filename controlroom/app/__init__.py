"""The Textual app: the screens, the per-pane controllers, the link to the server.

app.py composes plain objects, each given what it needs through its constructor: room.py (the board and the state
around it), link.py (the socket; it posts Textual messages), dispatch.py (each event to the controllers that want
it), actions.py (the rollout's keys), flags.py, gate.py, stage.py, metrics.py, deploylog.py, hosts.py (one pane
each), ui.py (the narrow face of the app they get, and the act-once guard), coalesce.py, palette.py, screens.py.

May import: controlroom.core, config, engine, sources, the server's client side (server.client, server.protocol,
server.wire; never server.server, ops, notify...), widgets, and Textual.
"""
