"""A chat service's answer is checked as any outside answer (issue 15): a webhook on 127.0.0.1 that drips its answer
for ever, answers 100 MB, redirects, or asks to wait NaN seconds. Each send ends in time, reads little, and says
why in one line (never the webhook's URL)."""

from __future__ import annotations

import asyncio

import pytest

from controlroom.server import notify
from tests.hostile_source import HostileSource


def send(url: str, timeout: float = notify.TIMEOUT) -> None:
    async def go():
        hook = notify.Webhook(url + "/services/T000/B000/s3cr3tTOKEN", timeout=timeout)
        try:
            await hook.send("DEPLOY OK r2307")
        finally:
            await hook.close()

    asyncio.run(asyncio.wait_for(go(), 30))  # bounded: a send that hangs fails the test


def test_a_webhook_that_drips_its_answer_fails_the_send_at_the_deadline_for_the_whole_answer():
    with HostileSource(b"o", drip=True) as hook:
        with pytest.raises(notify.SendFailed, match=r"^no whole answer in 1 s$") as e:
            send(hook.url, timeout=1.0)
    assert not e.value.final  # tried again later, with backoff


def test_a_webhook_answering_100_mb_is_read_no_further_than_the_cap():
    with HostileSource(b"ok", size=100 * 1024 * 1024) as hook:
        send(hook.url)  # a 200: the message went out; the rest of the answer is never read
        assert hook.asked
    assert hook.sent < 100 * 1024 * 1024


def test_a_webhook_that_redirects_is_not_followed_and_is_a_final_failure_without_the_url():
    with HostileSource(b"ok", status=301, headers={"Location": "http://127.0.0.1:9/elsewhere"}) as hook:
        with pytest.raises(notify.SendFailed) as e:
            send(hook.url)
        assert len(hook.asked) == 1
    assert e.value.final and str(e.value).startswith("HTTP 301: the webhook redirects, and redirects are not followed")
    assert "s3cr3t" not in str(e.value)


def test_a_retry_after_that_is_not_a_number_waits_a_second():
    assert notify._retry_after("nan") == 1.0 and notify._retry_after("inf") == notify.MAX_RETRY_AFTER
