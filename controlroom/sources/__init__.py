"""What the control room reads from outside: metrics sources over httpx, and git (revisions, the staging diff).
Every answer is checked in shape, size and time.

May import: controlroom.core, controlroom.config.
"""
