"""The footer, showing only whole keys: a key that does not fit is left out, never drawn in part.

Textual's Footer lays its keys out left to right in a row that scrolls sideways (with no scrollbar), and docks the
command palette's key (`^p palette`) on the right over them. On a narrow terminal the keys run on under the
palette's key: the one it covers shows only its start ("⏎ Open" of "⏎ Open entry"), and in the compact footer the
palette's key keeps a margin of one cell at the right edge, through which the letter of a key further on shows
("^p palettel", the l of "esc Close"). ``WholeFooter`` arranges as the Footer does, then leaves out every key that
does not end inside the room left of the palette's key. The keys of the screen come first: when they do not all fit
beside the palette's key, the palette's key is left out (ctrl+p still opens the palette; help lists every key) and
the keys get the whole width. Nothing else changes: where every key fits, the footer is the Footer's, cell for cell.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.layout import DockArrangeResult, WidgetPlacement
from textual.widgets import Footer

PALETTE = "-command-palette"  # the class the Footer gives the palette's key (docked right)


def _is_palette(p: WidgetPlacement) -> bool:
    return p.fixed and p.widget.has_class(PALETTE)


def whole_keys(placements: list[WidgetPlacement], width: int) -> list[WidgetPlacement]:
    """The placements to draw in a footer ``width`` cells wide: every key (in the row) that ends inside the room,
    the palette's key only when every key fits beside it."""
    palette = [p for p in placements if _is_palette(p)]
    keys = [p for p in placements if not p.fixed]
    others = [p for p in placements if p.fixed and not _is_palette(p)]
    if palette:
        room = min(p.region.grow(p.margin).x for p in palette)
        if all(p.region.right <= room for p in keys):
            return placements
    return [*others, *(p for p in keys if p.region.right <= width)]


class WholeFooter(Footer):
    """A Footer that draws each key whole or not at all (the keys before the palette's key)."""

    _whole: tuple[DockArrangeResult, DockArrangeResult] | None = None  # the Footer's arrangement, ours of it

    def arrange(self, size: Size, optimal: bool = False) -> DockArrangeResult:
        full = super().arrange(size, optimal)  # cached by the widget for this size and these children
        if self._whole is not None and self._whole[0] is full:
            return self._whole[1]
        kept = whole_keys(full.placements, size.width)
        if len(kept) == len(full.placements):
            result = full
        else:
            shown = {p.widget for p in kept}
            result = DockArrangeResult(kept, {w for w in full.widgets if w in shown}, full.scroll_spacing)
        self._whole = (full, result)
        return result
