"""Copy as cURL: a command line that sends exactly the captured request."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from client.inspector.curl import curl_command, printf_format, quote

BASH = shutil.which("bash")
SH = shutil.which("sh")


def test_a_post_with_headers_and_a_json_body() -> None:
    command = curl_command(
        "POST",
        "https://abc.example.com/hooks?x=1&y=2",
        [
            ("host", "abc.example.com"),
            ("content-type", "application/json"),
            ("content-length", "11"),
            ("x-forwarded-for", "1.2.3.4"),
            ("authorization", "Bearer it's"),
        ],
        b'{"a": "b"}\n',
    )
    assert command == (
        "curl 'https://abc.example.com/hooks?x=1&y=2' -H 'content-type: application/json' "
        "-H 'authorization: Bearer it'\"'\"'s' --data-binary $'{\"a\": \"b\"}\\n'"
    )


def test_methods() -> None:
    assert curl_command("GET", "http://h/", [], b"") == "curl http://h/"
    assert curl_command("HEAD", "http://h/", [], b"") == "curl --head http://h/"
    assert curl_command("DELETE", "http://h/", [], b"") == "curl -X DELETE http://h/"
    assert curl_command("PUT", "http://h/", [], b"x") == "curl -X PUT http://h/ --data-binary x"


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "plain"),
        ("two words", "'two words'"),
        ("it's", "'it'\"'\"'s'"),
        ("$HOME `id` \\", "'$HOME `id` \\'"),
        ("é ünïcode", "'é ünïcode'"),
        (b"\x00\xff\r\n\t'\\", "$'\\x00\\xff\\r\\n\\t\\'\\\\'"),
        ("bell\x07", "$'bell\\x07'"),
    ],
)
def test_quoting(value: str | bytes, quoted: str) -> None:
    assert quote(value) == quoted


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize(
    "value",
    [b"plain", b'it\'s a $HOME `x` \\ "q"', "é ü € 😀".encode(), bytes(range(1, 256)), b"\r\n"],
)
def test_bash_reads_back_the_same_bytes(value: bytes) -> None:
    """The shell word is exactly the bytes: bash prints them back unchanged."""
    assert BASH is not None
    done = subprocess.run(
        [BASH, "-c", f"printf %s {quote(value)}"], capture_output=True, check=True, timeout=10
    )
    assert done.stdout == value


def test_a_body_with_nul_bytes_is_piped_from_printf() -> None:
    """No argument can hold a NUL byte: the body comes from printf on stdin."""
    command = curl_command("POST", "http://h/", [], b"a\x00%b")
    assert command == "printf 'a\\000%%b' | curl http://h/ --data-binary @-"


@pytest.mark.skipif(SH is None, reason="no POSIX shell")
@pytest.mark.parametrize("value", [bytes(range(256)), b"%s%%\\0'x'\x00\x007", b"\x001"])
def test_the_printf_format_prints_the_same_bytes(value: bytes) -> None:
    assert SH is not None
    done = subprocess.run(
        [SH, "-c", f"printf {printf_format(value)}"], capture_output=True, check=True, timeout=10
    )
    assert done.stdout == value
