"""The engine: the rollout (state, intents, the phase loop), the work on one host, recovery, gates, the flag push,
the stage; and the board, the projection of the event stream that every client renders.

May import: controlroom.core, config, journal, fleet, sources. Never Textual.
"""
