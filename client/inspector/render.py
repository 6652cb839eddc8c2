"""How the inspector shows a body: the decisions, as data. No I/O.

``render`` looks at the headers and the bytes kept and says what to show:
JSON pretty-printed, text, an image, or a hex preview of anything else, with a
note for each thing a person should know (a body cut short by the cap, a gzip
body shown decoded, a brotli body that the standard library cannot decode).
Only the copy shown is decoded: what crossed the tunnel is never touched.
"""

from __future__ import annotations

import base64
import codecs
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

from ..protocol import Headers, header_values

#: Bytes of text or decoded body shown; a longer body is cut here, with a note.
SHOWN_BYTES = 256 * 1024
#: Bytes shown of a binary body, as hex.
HEX_BYTES = 4096
#: Images the page shows with ``<img>`` (where no script runs, SVG included).
IMAGE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "image/svg+xml",
    }
)
_TEXT_TYPES = frozenset(
    {
        "application/javascript",
        "application/ecmascript",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "application/x-ndjson",
        "application/yaml",
        "application/x-yaml",
        "application/csv",
    }
)
#: Characters allowed in text besides printable ones.
_TEXT_CONTROLS = frozenset("\t\n\r\f")

Kind = Literal["empty", "json", "text", "image", "binary"]


@dataclass(frozen=True)
class BodyView:
    kind: Kind
    #: Pretty JSON, text, or a hex dump, as shown.
    text: str = ""
    #: For images: a ``data:`` URI.
    image: str = ""
    notes: list[str] = field(default_factory=list)
    content_type: str = ""
    #: Bytes on the wire, kept or not.
    size: int = 0

    def document(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "image": self.image,
            "notes": self.notes,
            "content_type": self.content_type,
            "size": self.size,
        }


@dataclass(frozen=True)
class MediaType:
    essence: str
    charset: str | None

    @classmethod
    def of(cls, headers: Headers) -> MediaType:
        values = header_values(headers, "content-type")
        if not values:
            return cls("", None)
        essence, *params = values[0].split(";")
        charset = None
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                charset = value.strip().strip('"') or None
        return cls(essence.strip().lower(), charset)

    @property
    def is_json(self) -> bool:
        return self.essence == "application/json" or self.essence.endswith("+json")

    @property
    def is_text(self) -> bool:
        return (
            self.essence.startswith("text/")
            or self.essence in _TEXT_TYPES
            or self.essence.endswith("+xml")
        )


def render(headers: Headers, data: bytes, seen: int) -> BodyView:
    """Decide how to show a body of ``seen`` bytes of which ``data`` were kept."""
    media = MediaType.of(headers)
    notes: list[str] = []
    if seen == 0:
        return BodyView("empty", content_type=media.essence)
    if seen > len(data):
        notes.append(f"only the first {_size(len(data))} of {_size(seen)} were kept")
    decoded = _decoded(headers, data, complete=seen == len(data), notes=notes)
    if decoded is None:  # an encoding we cannot or did not undo: show the bytes
        return _binary(data, media, notes, seen)
    body, decoded_whole = decoded
    whole = seen == len(data) and decoded_whole
    if media.essence in IMAGE_TYPES:
        if whole:
            image = f"data:{media.essence};base64,{base64.b64encode(body).decode()}"
            return BodyView(
                "image", image=image, notes=notes, content_type=media.essence, size=seen
            )
        notes.append("the image is incomplete, so its bytes are shown")
        return _binary(body, media, notes, seen)
    text = _text(body, media)
    if text is None:
        return _binary(body, media, notes, seen)
    if media.is_json or (not media.essence and text.lstrip()[:1] in ("{", "[")):
        pretty = _pretty_json(text, whole and len(body) <= SHOWN_BYTES, notes)
        if pretty is not None:
            return BodyView("json", text=pretty, notes=notes, content_type=media.essence, size=seen)
    if len(body) > SHOWN_BYTES:
        notes.append(f"showing the first {_size(SHOWN_BYTES)}")
        text = text[:SHOWN_BYTES]
    return BodyView("text", text=text, notes=notes, content_type=media.essence, size=seen)


def _decoded(
    headers: Headers, data: bytes, complete: bool, notes: list[str]
) -> tuple[bytes, bool] | None:
    """The body with its content coding undone, and whether all of it was; None if not undone."""
    codings = [
        part.strip().lower()
        for value in header_values(headers, "content-encoding")
        for part in value.split(",")
        if part.strip() and part.strip().lower() != "identity"
    ]
    if not codings:
        return data, True
    if len(codings) > 1:
        notes.append(f"encoded as {', '.join(codings)}, not decoded")
        return None
    coding = codings[0]
    if coding == "br":
        # No brotli decoder in the standard library, and the client takes no dependency.
        notes.append("brotli-encoded, not decoded")
        return None
    if coding not in ("gzip", "x-gzip", "deflate"):
        notes.append(f"{coding}-encoded, not decoded")
        return None
    try:
        body, whole = _inflate(data, coding)
    except zlib.error as exc:
        notes.append(f"{coding}-encoded, but it does not decode ({exc})")
        return None
    note = f"{coding}-encoded on the wire; shown decoded"
    if not whole:
        note += f" (the first {_size(len(body))})" if complete else " as far as it was kept"
    notes.append(note)
    return body, whole


def _inflate(data: bytes, coding: str) -> tuple[bytes, bool]:
    """Decode at most SHOWN_BYTES (a small body may inflate hugely); say if that was all."""
    if coding != "deflate":
        wbits = zlib.MAX_WBITS | 16  # gzip framing
    elif _zlib_header(data):
        wbits = zlib.MAX_WBITS  # RFC 9110 section 8.4.1.2: "deflate" is zlib-wrapped ...
    else:
        wbits = -zlib.MAX_WBITS  # ... but some servers send raw deflate
    inflater = zlib.decompressobj(wbits)
    body = inflater.decompress(data, SHOWN_BYTES)
    return body, inflater.eof and not inflater.unconsumed_tail


def _zlib_header(data: bytes) -> bool:
    """RFC 1950 section 2.2: method 8 in the low nibble, and the two bytes a multiple of 31."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


def _text(body: bytes, media: MediaType) -> str | None:
    """The body as text, if it is text: declared so, or readable as UTF-8."""
    encoding = "utf-8"
    if media.charset:
        try:
            encoding = codecs.lookup(media.charset).name
        except LookupError:
            encoding = "utf-8"
    sample = body[:SHOWN_BYTES]
    text = sample.decode(encoding, errors="replace")
    if media.is_text or media.is_json:
        return text
    return text if _looks_like_text(text) else None


def _looks_like_text(text: str) -> bool:
    """No NUL, and hardly any replacement or control characters."""
    if "\x00" in text:
        return False
    odd = sum(1 for c in text if c == "\ufffd" or (not c.isprintable() and c not in _TEXT_CONTROLS))
    # A multi-byte character cut at the end of the kept bytes is not a sign of binary.
    return odd <= max(1, len(text) // 100)


def _pretty_json(text: str, whole: bool, notes: list[str]) -> str | None:
    if not whole:
        notes.append("cut short, so not parsed as JSON")
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        notes.append("not valid JSON")
        return None
    return json.dumps(parsed, indent=2, ensure_ascii=False)


def _binary(data: bytes, media: MediaType, notes: list[str], seen: int) -> BodyView:
    if len(data) > HEX_BYTES:
        notes.append(f"binary: the first {_size(HEX_BYTES)} shown as hex")
    return BodyView(
        "binary", text=hexdump(data[:HEX_BYTES]), notes=notes, content_type=media.essence, size=seen
    )


def hexdump(data: bytes) -> str:
    """``offset  16 hex bytes  |ascii|`` lines, as ``hexdump -C`` prints them."""
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in row)
        ascii_ = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{offset:08x}  {hexes:<47}  |{ascii_}|")
    return "\n".join(lines)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1 << 20:
        return f"{count / 1024:.0f} KiB"
    return f"{count / (1 << 20):.1f} MiB"
