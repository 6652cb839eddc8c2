"""Token generation and hashing, without a database."""

import hashlib
import string

from tokens import crypto


def test_a_token_starts_with_the_prefix():
    """A token starts with lmn_."""
    assert crypto.generate_token().startswith("lmn_")
    assert crypto.TOKEN_PREFIX == "lmn_"


def test_a_token_has_forty_random_characters_after_the_prefix():
    """A token is the prefix plus 40 characters."""
    assert len(crypto.generate_token()) == 4 + 40


def test_a_token_uses_only_base62_characters():
    """The random part of a token uses only letters and digits."""
    allowed = set(string.ascii_letters + string.digits)
    for _ in range(50):
        assert set(crypto.generate_token()[4:]) <= allowed


def test_a_token_never_starts_with_a_dash():
    """A token cannot be mistaken for a command-line option."""
    assert not any(crypto.generate_token().startswith("-") for _ in range(50))


def test_two_tokens_differ():
    """Each call returns a new token."""
    assert len({crypto.generate_token() for _ in range(100)}) == 100


def test_the_digest_is_the_sha256_hex_of_the_token():
    """The digest is the hex SHA-256 of the UTF-8 token, the same on every call."""
    token = crypto.generate_token()
    assert crypto.digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert crypto.digest(token) == crypto.digest(token)
    assert len(crypto.digest(token)) == crypto.DIGEST_LENGTH == 64


def test_different_tokens_have_different_digests():
    """Two tokens do not share a digest."""
    assert crypto.digest(crypto.generate_token()) != crypto.digest(crypto.generate_token())


def test_the_display_prefix_is_the_first_eight_characters():
    """The display prefix is lmn_ and the next four characters."""
    token = "lmn_Ab3x" + "y" * 36
    assert crypto.display_prefix(token) == "lmn_Ab3x"


def test_a_generated_token_looks_like_a_token():
    """Generated tokens pass the shape check."""
    assert crypto.looks_like_token(crypto.generate_token())


def test_values_of_the_wrong_shape_do_not_look_like_tokens():
    """A wrong prefix, length or alphabet, or a non-string, fails the shape check."""
    good = crypto.generate_token()
    for value in (
        "",
        "lmn_",
        good[:-1],
        good + "a",
        good + "\n",
        "xyz_" + good[4:],
        "LMN_" + good[4:],
        good[:-1] + "-",
        good[:-1] + "_",
        good[:-1] + "é",
        good[:-1] + "٣",
        None,
        good.encode(),
    ):
        assert not crypto.looks_like_token(value), value
