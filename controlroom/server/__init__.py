"""The control-room server (one per state directory): the socket and its door, the operations on the fleet, the
views, the notifier, the protocol and its wire shapes, and the client that talks to it.

May import: controlroom.engine and everything below it (core, config, journal, fleet, sources). Never Textual.
The app reaches only the client side: server.client, server.protocol, server.wire.
"""
