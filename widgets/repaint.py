"""Static.update without a layout pass of the whole screen when the widget keeps its size.

Static.update lays the screen out again by default, and a layout pass repaints every pane. During a deploy of
thousands of hosts the header lines, the phase bars and the staging diff's live side change several times a second
while their size stays the same; laying the screen out for each was most of the app's CPU between a key press and
the screen (bench/scale.py), so these updates repaint the widget alone unless its height changes.
"""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static

__all__ = ["update_in_place"]


def update_in_place(widget: Static, content: VisualType) -> None:
    """Show ``content`` in ``widget``: a repaint of the widget when the new content is as tall as the old one at
    the widget's width (measured as the layout measures it) and the widget's width does not follow its content;
    otherwise Static.update's layout pass."""
    width = widget.styles.width
    room = widget.content_size.width
    if not widget.is_mounted or room <= 0 or (width is not None and width.is_auto):
        widget.update(content)
        return
    before = widget.visual.get_height(widget.styles, room)
    widget.update(content, layout=False)
    if widget.visual.get_height(widget.styles, room) != before:
        widget.refresh(layout=True)
