"""The embedded default: a simulated fleet of SSH hosts on 127.0.0.1."""
