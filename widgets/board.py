"""Moved to controlroom.board (the board is a core projection of the event stream); kept so old imports work."""

from controlroom.board import OUTPUT_LINES, Board, HostView, PhaseView

__all__ = ["OUTPUT_LINES", "Board", "HostView", "PhaseView"]
