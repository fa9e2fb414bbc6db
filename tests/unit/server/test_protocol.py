"""The control-room socket's protocol on its own (controlroom.server.protocol, and wire.py for what is in
them): one JSON object a line, bounded, and every request's fields checked for type before an operation sees them."""

from __future__ import annotations

import asyncio
import json

import pytest

from controlroom.core.errors import UsageError
from controlroom.server.protocol import REQUEST_MAX, ProtocolError, encode, read_msg
from controlroom.server.statedir import socket_path
from controlroom.server.wire import REQUESTS, BadRequest, check_request


def reader_of(data: bytes, limit: int = REQUEST_MAX) -> asyncio.StreamReader:
    r = asyncio.StreamReader(limit=limit)
    r.feed_data(data)
    r.feed_eof()
    return r


def test_a_message_is_one_line_of_json_even_when_a_person_wrote_newlines_and_non_ascii_in_it():
    line = encode({"op": "lock", "message": "NO DEPLOY PLEASE\nmigration — løbende", "id": 1})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["message"] == "NO DEPLOY PLEASE\nmigration — løbende"


async def test_messages_are_read_back_one_a_line_and_the_end_of_the_stream_is_none():
    r = reader_of(encode({"op": "status", "id": 1}) + encode({"op": "flags", "id": "two"}))
    assert await read_msg(r) == {"op": "status", "id": 1}
    assert await read_msg(r) == {"op": "flags", "id": "two"}
    assert await read_msg(r) is None


async def test_a_line_longer_than_the_limit_is_refused_naming_the_limit():
    big = encode({"op": "log_add", "message": "x" * (REQUEST_MAX + 10)})
    with pytest.raises(ProtocolError, match=f"a message longer than {REQUEST_MAX} bytes"):
        await read_msg(reader_of(big), REQUEST_MAX)


async def test_a_request_just_under_the_limit_is_read_whole():
    msg = {"op": "log_add", "message": "x" * (REQUEST_MAX - 100)}
    assert await read_msg(reader_of(encode(msg)), REQUEST_MAX) == msg


@pytest.mark.parametrize("data, why", [
    (b"not json\n", "a line that is not JSON"),
    (b"[1, 2]\n", "a message that is not a JSON object"),
    (b'"op"\n', "a message that is not a JSON object"),
    (b'{"op": "status"', "the connection ended in the middle of a message"),
])
async def test_anything_but_a_json_object_a_line_is_a_protocol_error_saying_what_it_was(data, why):
    with pytest.raises(ProtocolError, match=why):
        await read_msg(reader_of(data))


def test_a_request_with_the_fields_its_op_takes_passes():
    check_request({"op": "flag_set", "id": 3, "flag": "new_search", "value": "off", "hosts": ["web001"],
                   "expect": 2, "reason": None})
    check_request({"op": "flag_set", "id": "a", "flag": "beehive", "value": True})
    check_request({"op": "deploy", "id": 1, "revision": "r2307", "newer_field": {"a": 1}})  # unknown: left alone
    check_request({"op": "no_such_op", "id": 1, "anything": [1]})  # the caller refuses an op it does not know


@pytest.mark.parametrize("msg, error", [
    ({"op": "retry", "id": 1}, "retry: field 'host' is missing"),
    ({"op": "retry", "id": 1, "host": 7}, "retry: field 'host' must be a string, not int"),
    ({"op": "hello", "version": "1"}, "hello: field 'version' must be a whole number, not str"),
    ({"op": "hello", "version": True}, "hello: field 'version' must be a whole number, not bool"),
    ({"op": "unlock", "id": 1, "force": "yes"}, "unlock: field 'force' must be true or false, not str"),
    ({"op": "flags_verify", "id": 1, "hosts": ["web001", 2]},
     "flags_verify: field 'hosts' must be a list of strings, not list"),
    ({"op": "flags_verify", "id": 1, "hosts": "web001"}, "flags_verify: field 'hosts' must be a list of strings, not str"),
    ({"op": "flag_set", "id": 1, "flag": "f", "value": [1]},
     "flag_set: field 'value' must be a string or true or false or a whole number, not list"),
    ({"op": "status", "id": True}, "field 'id' must be a number or a string"),
    ({"op": "status", "id": [1]}, "field 'id' must be a number or a string"),
])
def test_a_field_of_the_wrong_type_is_refused_naming_the_op_and_the_field(msg, error):
    with pytest.raises(BadRequest) as e:
        check_request(msg)
    assert str(e.value).startswith(error) and e.value.exit_code == 2


def test_every_op_names_its_fields_with_types_the_checker_can_name():
    for op, fields in REQUESTS.items():
        for name, (types, required) in fields.items():
            assert types and isinstance(required, bool), (op, name)


def test_a_state_dir_whose_socket_path_is_too_long_is_one_line_saying_to_set_a_shorter_one(tmp_path):
    assert socket_path(tmp_path).name == "control.sock"
    with pytest.raises(UsageError, match=r"longer than a Unix socket allows \(107\); set a shorter \[state\] dir"):
        socket_path(tmp_path / ("d" * 120))


# --------------------------------------------------------------------------------------------- the wire shapes


def test_a_lock_goes_on_the_wire_with_every_field_named_as_before_and_comes_back_the_same():
    from controlroom.server.wire import Lock

    lock = Lock(user="alice", at=1.5, reason="r2307 halted in canary", pid=None, hostname=None, rollout_id=3,
                origin="10.0.0.5", stale=False, live=False, said="deploy #3 by alice", gives_up="abandons the lock")
    d = lock.to_wire()
    # the journal reply's names (user .. stale) and the snapshot's (live, describe), one shape for both
    assert set(d) == {"user", "at", "reason", "pid", "hostname", "rollout_id", "origin", "stale", "live", "describe",
                      "abandons"}
    assert Lock.from_wire(d) == lock and Lock.from_wire({**d, "newer_field": 1}) == lock
    assert lock.parked and lock.describe() == "deploy #3 by alice"
    assert Lock.from_wire(None) is None and Lock.from_wire({}) is None


def test_a_lock_another_bastion_drives_says_so_on_the_wire_and_comes_back_the_same():
    from controlroom.server.wire import Lock

    lock = Lock(user="alice", at=1.5, reason="deploying r2307", pid=42, hostname="bastion-a", rollout_id=3,
                live=True, said="deploy #3 by alice", elsewhere=True)
    assert lock.to_wire()["elsewhere"] is True and Lock.from_wire(lock.to_wire()) == lock


def test_a_reply_carries_its_id_and_notices_and_a_refusal_its_line_exit_code_and_whether_another_drives():
    from controlroom.server import wire

    assert wire.reply(4, {"line": "x"}, ["reloaded"]) == {"id": 4, "ok": True, "line": "x", "notice": ["reloaded"]}
    assert wire.reply("a") == {"id": "a", "ok": True}
    assert wire.refusal(5, "no deploy runs in the server", 1) == {"id": 5, "ok": False, "exit": 1,
                                                                   "error": "no deploy runs in the server"}
    assert wire.refusal(6, "alice is driving r2307; act anyway?", 3, driven=True)["driven"] is True
    assert [wire.request_id({"id": v}) for v in (7, "b", True, 1.5, None, [1])] == [7, "b", None, None, None, None]
