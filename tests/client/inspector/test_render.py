"""How a body is shown: the decisions, from headers and bytes."""

from __future__ import annotations

import base64
import gzip
import zlib

import pytest

from client.inspector.render import HEX_BYTES, SHOWN_BYTES, hexdump, render

JSON = [("Content-Type", "application/json; charset=utf-8")]


def test_json_is_pretty_printed() -> None:
    data = b'{"a":[1,2],"b":"\xc3\xa9"}'
    view = render(JSON, data, len(data))
    assert view.kind == "json"
    assert view.text == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": "é"\n}'
    assert view.notes == []


def test_json_without_a_type_is_recognised() -> None:
    assert render([], b'[{"x": 1}]', 10).kind == "json"


def test_invalid_json_is_shown_as_text_with_a_note() -> None:
    view = render(JSON, b"{not json", 9)
    assert (view.kind, view.text, view.notes) == ("text", "{not json", ["not valid JSON"])


def test_text_is_shown_in_its_charset() -> None:
    view = render([("Content-Type", "text/plain; charset=iso-8859-1")], b"caf\xe9", 4)
    assert (view.kind, view.text) == ("text", "café")


def test_an_image_is_shown_as_an_image() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(40)
    view = render([("Content-Type", "image/png")], png, len(png))
    assert view.kind == "image"
    assert view.image == "data:image/png;base64," + base64.b64encode(png).decode()


def test_an_incomplete_image_is_shown_as_hex() -> None:
    view = render([("Content-Type", "image/png")], b"\x89PNG", 1000)
    assert view.kind == "binary"
    assert "only the first 4 bytes of 1000 bytes were kept" in view.notes


def test_binary_is_a_hex_preview() -> None:
    data = bytes(range(256)) * 64
    view = render([("Content-Type", "application/octet-stream")], data, len(data))
    assert view.kind == "binary"
    assert view.text.splitlines()[0] == (
        "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|"
    )
    assert len(view.text.splitlines()) == HEX_BYTES // 16
    assert view.notes == ["binary: the first 4 KiB shown as hex"]


def test_hexdump_shows_printable_bytes() -> None:
    assert hexdump(b"Hi\x00") == "00000000  48 69 00" + " " * 39 + "  |Hi.|"


def test_a_cut_body_says_so() -> None:
    view = render([("Content-Type", "text/plain")], b"a" * 100, 5 << 20)
    assert view.kind == "text"
    assert view.notes == ["only the first 100 bytes of 5.0 MiB were kept"]


def test_cut_json_is_not_parsed() -> None:
    view = render(JSON, b'{"a": 1, "b"', 50)
    assert view.kind == "text"
    assert "cut short, so not parsed as JSON" in view.notes


def test_a_long_text_is_shown_up_to_the_display_limit() -> None:
    data = b"x" * (SHOWN_BYTES + 10)
    view = render([("Content-Type", "text/plain")], data, len(data))
    assert len(view.text) == SHOWN_BYTES
    assert view.notes == ["showing the first 256 KiB"]


def test_gzip_is_shown_decoded_with_a_note() -> None:
    data = gzip.compress(b'{"zipped": true}')
    view = render([*JSON, ("Content-Encoding", "gzip")], data, len(data))
    assert (view.kind, view.text) == ("json", '{\n  "zipped": true\n}')
    assert view.notes == ["gzip-encoded on the wire; shown decoded"]
    assert view.size == len(data)  # the size is the wire's


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
def test_deflate_is_shown_decoded_zlib_wrapped_or_raw(wbits: int) -> None:
    packer = zlib.compressobj(wbits=wbits)
    data = packer.compress(b"deflated text") + packer.flush()
    view = render(
        [("Content-Type", "text/plain"), ("Content-Encoding", "deflate")], data, len(data)
    )
    assert (view.kind, view.text) == ("text", "deflated text")


def test_a_cut_gzip_body_is_decoded_as_far_as_it_was_kept() -> None:
    data = gzip.compress("\n".join(str(n * n) for n in range(20_000)).encode())
    kept = data[: len(data) // 2]
    view = render([("Content-Type", "text/plain"), ("Content-Encoding", "gzip")], kept, len(data))
    assert view.kind == "text" and view.text.startswith("0\n1\n4\n9\n")
    assert "gzip-encoded on the wire; shown decoded as far as it was kept" in view.notes


def test_a_gzip_bomb_is_decoded_only_up_to_the_display_limit() -> None:
    data = gzip.compress(b"\x00" * (50 << 20))
    view = render([("Content-Encoding", "gzip")], data, len(data))
    assert len(view.text.splitlines()) <= HEX_BYTES // 16
    assert "gzip-encoded on the wire; shown decoded (the first 256 KiB)" in view.notes


def test_brotli_is_not_decoded_and_says_so() -> None:
    view = render([("Content-Type", "text/html"), ("Content-Encoding", "br")], b"\x1b\x03", 2)
    assert view.kind == "binary"
    assert view.notes == ["brotli-encoded, not decoded"]


def test_a_broken_gzip_body_is_shown_as_bytes() -> None:
    view = render([("Content-Encoding", "gzip")], b"not gzip at all", 15)
    assert view.kind == "binary"
    assert view.notes[0].startswith("gzip-encoded, but it does not decode")


def test_an_empty_body() -> None:
    assert render(JSON, b"", 0).kind == "empty"


def test_undeclared_utf8_text_is_text_and_undeclared_bytes_are_binary() -> None:
    assert render([], "héllo wörld\n".encode(), 14).kind == "text"
    assert render([], b"\x00\x01\x02\xff\xfe", 5).kind == "binary"
