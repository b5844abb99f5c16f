"""The frame splitter without sockets: whole frames however the stream is cut, and a typed
error at a size prefix over ``socket.request.max.bytes``."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.protocol.frames import FrameSplitter, FrameTooLargeError


def framed(payloads) -> bytes:
    return b"".join(struct.pack(">i", len(p)) + p for p in payloads)


def split(splitter: FrameSplitter, chunks) -> list[bytes]:
    frames = []
    for chunk in chunks:
        splitter.feed(chunk)
        while (frame := splitter.next_frame()) is not None:
            frames.append(bytes(frame))
    return frames


PAYLOADS = [b"", b"a", b"\x00" * 3, b"xyz" * 100, b"\xff\xff\xff\xff"]


def test_frames_fed_one_byte_at_a_time_come_out_whole_once():
    stream = framed(PAYLOADS)
    assert split(FrameSplitter(1 << 20), [bytes([b]) for b in stream]) == PAYLOADS


def test_many_frames_in_one_read_come_out_in_order():
    assert split(FrameSplitter(1 << 20), [framed(PAYLOADS) * 3]) == PAYLOADS * 3


def test_a_frame_is_not_given_before_its_last_byte():
    splitter = FrameSplitter(100)
    stream = framed([b"hello"])
    splitter.feed(stream[:-1])
    assert splitter.next_frame() is None
    splitter.feed(stream[-1:])
    assert bytes(splitter.next_frame()) == b"hello"
    assert splitter.next_frame() is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=70), max_size=12),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=50),
)
def test_any_chunking_gives_the_same_frames(payloads, cuts):
    stream = framed(payloads)
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        chunks.append(stream[pos : pos + n])
        pos += n
        i += 1
    assert split(FrameSplitter(70), chunks) == payloads


def test_a_frame_at_the_limit_passes_and_one_past_it_raises_after_the_frames_before():
    splitter = FrameSplitter(10)
    splitter.feed(framed([b"x" * 10, b"ok"]) + struct.pack(">i", 11) + b"y" * 11)
    assert bytes(splitter.next_frame()) == b"x" * 10
    assert bytes(splitter.next_frame()) == b"ok"
    with pytest.raises(FrameTooLargeError) as raised:
        splitter.next_frame()
    assert (raised.value.size, raised.value.limit) == (11, 10)
    assert "over socket.request.max.bytes (10)" in str(raised.value)


def test_the_limit_is_seen_from_the_size_prefix_alone():
    splitter = FrameSplitter(1000)
    splitter.feed(struct.pack(">i", 5000))  # none of the 5000 bytes has arrived
    with pytest.raises(FrameTooLargeError):
        splitter.next_frame()


def test_a_negative_size_reads_as_over_two_gigabytes():
    splitter = FrameSplitter(1 << 20)
    splitter.feed(b"\xff\xff\xff\xfe")
    with pytest.raises(FrameTooLargeError) as raised:
        splitter.next_frame()
    assert raised.value.size == 2**32 - 2
