"""Copy as cURL: a captured request as one shell command line. No I/O.

Quoting is for POSIX shells: ``'...'`` for plain text, and bash's ``$'...'``
(also zsh's and ksh's) for anything with control characters or bytes that are
not UTF-8, which single quotes cannot carry. No argument can carry a NUL byte,
so a body with one is piped in from ``printf``, whose octal escapes can.
"""

from __future__ import annotations

import shlex

from ..protocol import Headers

#: Headers curl writes itself, or that the server adds and would see claimed:
#: the URL sets Host, curl counts the body, and X-Forwarded-* are the server's own.
_LEFT_TO_CURL = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)
_ANSI_C_ESCAPES = {ord("\\"): "\\\\", ord("'"): "\\'", ord("\n"): "\\n", ord("\r"): "\\r"}
_ANSI_C_ESCAPES[ord("\t")] = "\\t"


def curl_command(method: str, url: str, headers: Headers, body: bytes) -> str:
    """The curl command line that sends this request again to ``url``."""
    words = ["curl"]
    if method == "HEAD":
        words.append("--head")  # -X HEAD would wait for a body that never comes
    elif not (method == "GET" and not body) and not (method == "POST" and body):
        words += ["-X", quote(method)]
    words.append(quote(url))
    for name, value in headers:
        if name.lower() not in _LEFT_TO_CURL:
            words += ["-H", quote(f"{name}: {value}".encode("latin-1"))]
    if b"\x00" in body:
        return f"printf {printf_format(body)} | " + " ".join([*words, "--data-binary", "@-"])
    if body:
        words += ["--data-binary", quote(body)]
    return " ".join(words)


def quote(value: str | bytes) -> str:
    """One shell word that stands for exactly ``value``'s bytes (text is UTF-8)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _ansi_c(data)
    if any(not c.isprintable() and c != " " for c in text):
        return _ansi_c(data)
    return shlex.quote(text)


def printf_format(data: bytes) -> str:
    """A quoted ``printf`` format that prints exactly ``data`` (POSIX octal escapes)."""
    out = []
    for byte in data:
        if byte == ord("%"):
            out.append("%%")
        elif byte == ord("\\"):
            out.append("\\\\")
        elif byte == ord("'"):
            out.append("'\\''")  # close the quotes, a quoted quote, open them again
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return "'" + "".join(out) + "'"


def _ansi_c(data: bytes) -> str:
    """``$'...'``: printable ASCII as is, the rest escaped (``\\n``, ``\\xHH``)."""
    out = []
    for byte in data:
        if byte in _ANSI_C_ESCAPES:
            out.append(_ANSI_C_ESCAPES[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"
