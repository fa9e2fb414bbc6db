"""The embedded default: a simulated fleet of SSH hosts on 127.0.0.1, its metrics and its git repository.

May import: controlroom.core, config, fleet, sources. The CLI starts it; it never imports server, cli or app.
"""
