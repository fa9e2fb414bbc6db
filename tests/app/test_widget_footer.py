"""widgets/footer.py: the footer draws each key whole or not at all. Where every key fits beside the palette's key
it is Textual's Footer cell for cell; where they do not, the palette's key goes first, then the keys that do not
fit, and nothing is drawn past the last whole key (Textual's compact Footer let a key show through the palette key's
right margin: "^p palettel")."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from widgets.footer import WholeFooter

KEYS = [("a", "Alpha one"), ("b", "Bravo two"), ("c", "Charlie three"), ("d", "Delta four"), ("e", "Echo")]


class Keys(App):
    BINDINGS = [Binding(key, f"app.bell('{key}')", label) for key, label in KEYS]

    def __init__(self, footer: type[Footer], compact: bool) -> None:
        super().__init__()
        self.footer_type, self.compact = footer, compact

    def compose(self) -> ComposeResult:
        yield self.footer_type(compact=self.compact)


def bottom(app: App) -> str:
    return app.screen._compositor.render_strips()[-1].text


def shown_keys(app: App) -> list[FooterKey]:
    return sorted((k for k in app.screen.query(FooterKey) if k.region.width), key=lambda k: k.region.x)


def assert_whole(app: App) -> list[str]:
    """Every key the footer shows is whole on the bottom line and nothing is drawn past them; their texts."""
    row = bottom(app)
    past = list(row)  # the cells no shown key covers (its border and padding count as the key's)
    texts = []
    for k in shown_keys(app):
        r, c, text = k.region, k.content_region, k.render().plain
        assert r.right <= len(row) and row[c.x:c.right] == text, f"{text!r} not whole: {row!r}"
        past[r.x:r.right] = [" "] * r.width
        texts.append(text.strip())
    assert not "".join(past).strip(), f"drawn past the whole keys: {row!r}"
    return texts


async def _footer_line(footer: type[Footer], compact: bool, width: int) -> str:
    app = Keys(footer, compact)
    async with app.run_test(size=(width, 3)) as pilot:
        await pilot.pause()
        return bottom(app)


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "plain"])
async def test_where_every_key_fits_beside_the_palette_the_footer_is_textuals_cell_for_cell(compact):
    assert await _footer_line(WholeFooter, compact, 100) == await _footer_line(Footer, compact, 100)


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "plain"])
async def test_a_narrow_footer_leaves_out_the_palettes_key_first_then_the_keys_that_do_not_fit(compact):
    app = Keys(WholeFooter, compact)
    async with app.run_test(size=(100, 3)) as pilot:
        await pilot.pause()
        texts = assert_whole(app)
        assert len(texts) == len(KEYS) + 1 and "palette" in texts[-1], texts  # everything fits
        keys = [k for k in shown_keys(app) if "palette" not in k.render().plain]
        await pilot.resize_terminal(keys[-1].region.right + 2, 3)  # the keys fit, the palette's key beside them does not
        await pilot.pause()
        texts = assert_whole(app)
        assert [t.split(" ", 1)[1] for t in texts] == [label for _, label in KEYS], texts
        await pilot.resize_terminal(30, 3)  # not even the keys: the first whole ones only
        await pilot.pause()
        texts = assert_whole(app)
        assert 1 <= len(texts) < len(KEYS) and [t.split(" ", 1)[1] for t in texts] == \
            [label for _, label in KEYS[:len(texts)]], texts
        await pilot.resize_terminal(100, 3)  # wide again: as it was
        await pilot.pause()
        assert len(assert_whole(app)) == len(KEYS) + 1


async def test_textuals_compact_footer_lets_a_key_show_past_the_palettes_key():
    """What WholeFooter is for: at this width Textual's compact Footer draws a cut key and one past the palette."""
    app = Keys(Footer, True)
    async with app.run_test(size=(50, 3)) as pilot:
        await pilot.pause()
        with pytest.raises(AssertionError):
            assert_whole(app)
