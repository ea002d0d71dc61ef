"""A pool's fetch and ack calls packed by their packers (store/fetchcall.py, store/ackcall.py):
byte for byte the command ``pack_call`` makes of the call's KEYS and ARGV lists, across calls
(what each packer keeps from one call to the next), or None (packed from the lists) when a
string of it (an id, a name, a token, the pool id, the namespace) is not ASCII; results and
envelopes of any bytes pack on the packers' path."""

from __future__ import annotations

import random

import pytest

from errands.store.ackcall import AckPacker, ack_request
from errands.store.bulk import pack_call
from errands.store.fetchcall import FetchCall, FetchPacker, fetch_request
from errands.store.keys import Keys
from errands.store.records import Acked

VERBS = [(b"FCALL", b"errands_ack_0123abcd"), (b"EVALSHA", b"a" * 40)]


def _fetch(rng: random.Random, pools: list[str], names: list[str]) -> FetchCall:
    queues = [(n, rng.choice([0, 0, 5, 100])) for n in rng.sample(names, rng.randint(0, 4))]
    specs = {n: rng.choice(["", "c5", "r3/1000"]) for n in names if rng.random() < 0.5}
    return FetchCall(
        rng.choice(pools),
        rng.randint(0, 2**45),
        rng.randint(0, 256),
        queues,
        rng.choice([0, 3]),
        rng.randint(0, 3),
        rng.choice([10_000, 2_500]),
        specs,
        rng.choice([3_000, 61_000]),
        rng.choice([None, True, False]),
        rng.choice([None, 4_000]),
    )


def test_a_fetch_is_packed_as_its_lists_are() -> None:
    rng = random.Random(5)
    keys = Keys("ns")
    packer = FetchPacker(keys)
    for _ in range(300):  # (one packer: its parts kept across calls, pools and queues)
        call = _fetch(rng, ["p1", "p2"], ["a", "b", "c", "d-e", "x" * 60])
        verb, fn = rng.choice(VERBS)
        assert packer.pack(verb, fn, call) == pack_call(fn, *fetch_request(keys, call), verb)


def test_a_fetch_not_ascii_is_left_to_the_lists() -> None:
    keys = Keys("ns")
    call = FetchCall("p1", 1, 2, [("é", 0)], 0, 0, 10_000, {}, 3_000, True, None)
    assert FetchPacker(keys).pack(b"FCALL", b"f", call) is None
    assert (
        FetchPacker(Keys("nś")).pack(
            b"FCALL", b"f", FetchCall("p", 1, 2, [], 0, 0, 1, {}, 1, None, None)
        )
        is None
    )


def _acked(rng: random.Random, names: list[str], ids: list[str]) -> Acked:
    a = Acked(
        rng.choice(ids) + str(rng.randint(0, 9)),
        rng.choice(names),
        rng.choice([b"null", b'{"x":[1,2]}', b"", b"7", '"é ✓"'.encode(), b"\xff\x00\r\n"]),
        rng.randint(0, 2**45),
        rng.choice([0, 86_400_000, 5]),
        rng.randint(1, 12),
        str(rng.randint(1, 10**9)),
    )
    if rng.random() < 0.2:
        a.envelope_json = b'{"n":"a","a":{}}'
    if rng.random() < 0.1:
        a.history_json = b'{"n":"a","a":{"_omitted":true}}'
    return a


def test_an_ack_is_packed_as_its_lists_are() -> None:
    rng = random.Random(7)
    keys = Keys("ns")
    packer = AckPacker(keys)
    for _ in range(300):
        names = ["a", "b", "x" * 60]
        runs = [rng.choice(names) for _ in range(rng.randint(1, 3))]  # (names in runs)
        done = [_acked(rng, [name], ["0f3a", "job-7", "J_9"]) for name in runs for _ in range(3)]
        done = done[: rng.randint(0, len(done))]
        pool_id, wake, history = rng.choice(["p1", "p2"]), rng.random() < 0.5, rng.random() < 0.5
        now_ms = rng.randint(0, 2**45)
        verb, fn = rng.choice(VERBS)
        request = ack_request(keys, pool_id, done, wake, now_ms, history)
        assert packer.pack(verb, fn, pool_id, done, wake, now_ms, history) == pack_call(
            fn, *request, verb
        )


def test_an_ack_of_jobs_sharing_tokens_results_and_starts_is_packed_as_its_lists_are() -> None:
    """The packer packs a token, result or start once for the jobs after that share it (the
    same object, or equal): runs of them, and of others between, pack as the lists do."""
    rng = random.Random(11)
    keys = Keys("ns")
    packer = AckPacker(keys)
    tokens = ["", "17", "17", str(10**12), "t" * 5000]
    results = [b"null", b"null", b"1", b"", b"r" * 5000]
    for _ in range(300):
        done = []
        for _ in range(rng.randint(0, 12)):
            a = _acked(rng, ["a", "b"], ["j"])
            if rng.random() < 0.8:
                a.token = rng.choice(tokens[:4] if rng.random() < 0.95 else tokens)
            if rng.random() < 0.8:
                a.result = rng.choice(results[:4] if rng.random() < 0.95 else results)
            if rng.random() < 0.8:
                a.started_ms = rng.choice([0, 1, 2**45])
            if rng.random() < 0.3:  # equal, not the same object
                a.token, a.result = (a.token + ".")[:-1], bytes(bytearray(a.result))
            done.append(a)
        request = ack_request(keys, "p", done, True, 5, True)
        assert packer.pack(b"FCALL", b"f", "p", done, True, 5, True) == pack_call(
            b"f", *request, b"FCALL"
        )


@pytest.mark.parametrize(
    "acked",
    [
        Acked("jé", "a", b"null", 1, 0, 1, "1"),  # an id
        Acked("j", "é", b"null", 1, 0, 1, "1"),  # a name
        Acked("j", "a", b"null", 1, 0, 1, "1é"),  # a token
    ],
)
def test_an_ack_not_ascii_is_left_to_the_lists(acked: Acked) -> None:
    assert AckPacker(Keys("ns")).pack(b"FCALL", b"f", "p", [acked], False, 1, True) is None
    assert AckPacker(Keys("ns")).pack(b"FCALL", b"f", "pé", [], False, 1, True) is None
    assert AckPacker(Keys("nś")).pack(b"FCALL", b"f", "p", [], False, 1, True) is None


@pytest.mark.parametrize(
    "acked",
    [
        Acked("j", "a", '"é ✓"'.encode(), 1, 0, 1, "1"),  # a result of UTF-8
        Acked("j", "a", bytes(range(256)), 1, 5, 1, "1"),  # any bytes, and a TTL of its own
        Acked("j", "a", b"null", 1, 0, 1, "1", envelope_json='{"a":"é"}'.encode()),
        Acked("j", "a", b"1", 1, 0, 1, "1", history_json=b'{"a":"\xff\x00"}' + b"\xff"),
    ],
)
def test_an_ack_of_results_not_ascii_is_packed_as_its_lists_are(acked: Acked) -> None:
    """Results and envelopes are bytes: any bytes pack on the packer's path, as they are."""
    keys = Keys("ns")
    packed = AckPacker(keys).pack(b"FCALL", b"f", "p", [acked], True, 1, True)
    assert packed is not None
    assert packed == pack_call(b"f", *ack_request(keys, "p", [acked], True, 1, True), b"FCALL")


@pytest.mark.parametrize("n", [4095, 4096, 70_000])
def test_an_ack_of_long_values_is_packed_as_its_lists_are(n: int) -> None:
    """Lengths of 4,096 and more have no head kept (store/bulk.py HEADS): made each time."""
    keys, packer = Keys("ns"), AckPacker(Keys("ns"))
    done = [
        Acked("j1", "a", b"r" * n, 1, 0, 1, "1"),
        Acked("j" * n, "a", b"null", 1, 0, 1, "t" * n),
        Acked("j3", "a", b"null", 1, 0, 1, "1", envelope_json=b"e" * n, history_json=b"h" * n),
        Acked("j4", "a", b"null", 1, 0, n, "1"),  # (an attempt number past the packed ones)
    ]
    for _ in range(2):  # (the second time with the pool and name parts the packer kept)
        packed = packer.pack(b"FCALL", b"f", "p", done, True, 1, True)
        assert packed == pack_call(b"f", *ack_request(keys, "p", done, True, 1, True), b"FCALL")


def test_an_empty_pool_id_raises_as_its_lists_do() -> None:
    keys, acked = Keys("ns"), Acked("j", "a", b"null", 1, 0, 1, "1")
    with pytest.raises(ValueError) as lists:
        ack_request(keys, "", [acked], False, 1, True)
    with pytest.raises(ValueError) as packed:
        AckPacker(keys).pack(b"FCALL", b"f", "", [acked], False, 1, True)
    assert str(packed.value) == str(lists.value)
    call = FetchCall("", 1, 2, [("a", 0)], 0, 0, 10_000, {}, 3_000, True, None)
    with pytest.raises(ValueError) as fetch_lists:
        fetch_request(keys, call)
    with pytest.raises(ValueError) as fetch_packed:
        FetchPacker(keys).pack(b"FCALL", b"f", call)
    assert str(fetch_packed.value) == str(fetch_lists.value)


@pytest.mark.parametrize("bad", ["", "a{b}", "a\nb"])
def test_an_ack_of_a_bad_id_raises_as_its_lists_do(bad: str) -> None:
    keys, acked = Keys("ns"), Acked(bad, "a", b"null", 1, 0, 1, "1")
    with pytest.raises(ValueError) as lists:
        ack_request(keys, "p", [acked], False, 1, True)
    with pytest.raises(ValueError) as packed:
        AckPacker(keys).pack(b"FCALL", b"f", "p", [acked], False, 1, True)
    assert str(packed.value) == str(lists.value)


def test_a_first_ack_without_a_result_fails_as_before() -> None:
    """The values of the job before start as no job's: a first job's None is looked at (and
    fails), never taken for the one before and left out of the frame."""
    rng = random.Random(3)
    a = _acked(rng, ["a"], ["j"])
    a.result = None  # type: ignore[assignment]
    with pytest.raises(AttributeError):
        AckPacker(Keys("ns")).pack(b"FCALL", b"f", "p", [a], True, 5, True)


def test_a_first_ack_without_a_start_is_packed_as_its_lists_are() -> None:
    rng = random.Random(4)
    keys = Keys("ns")
    a = _acked(rng, ["a"], ["j"])
    a.started_ms = None  # type: ignore[assignment]
    request = ack_request(keys, "p", [a], True, 5, True)
    packed = AckPacker(keys).pack(b"FCALL", b"f", "p", [a], True, 5, True)
    assert packed == pack_call(b"f", *request, b"FCALL")
