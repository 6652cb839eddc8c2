"""Generate access tokens and hash them: pure functions, no Django.

A token is ``lmn_`` followed by 40 base62 characters (about 238 bits from
``secrets``). Only its SHA-256 digest is stored: the token is already
high-entropy, so a slow password hash would add cost without adding safety.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

TOKEN_PREFIX = "lmn_"
#: Keys of the admin API: the same shape, another prefix, so one is never taken
#: for the other (a tunnel token never opens the API, nor a key a tunnel).
API_KEY_PREFIX = "lmk_"
#: Random characters after the prefix; 62**40 is about 2**238.
SECRET_LENGTH = 40
#: Letters and digits only, so a token survives shells, URLs and double-click selection.
ALPHABET = string.ascii_letters + string.digits
#: Characters shown to humans to tell tokens apart; not enough to guess the rest.
DISPLAY_PREFIX_LENGTH = 8
#: Length of a hex SHA-256 digest.
DIGEST_LENGTH = 64

_TOKEN_RE = re.compile(re.escape(TOKEN_PREFIX) + f"[A-Za-z0-9]{{{SECRET_LENGTH}}}")
_API_KEY_RE = re.compile(re.escape(API_KEY_PREFIX) + f"[A-Za-z0-9]{{{SECRET_LENGTH}}}")


def generate_token(prefix: str = TOKEN_PREFIX) -> str:
    """Return a new random token (or, with API_KEY_PREFIX, an API key)."""
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))


def digest(token: str) -> str:
    """Return the hex SHA-256 digest of the token, the only form we store."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def display_prefix(token: str) -> str:
    """Return the non-secret start of the token that identifies it to humans."""
    return token[:DISPLAY_PREFIX_LENGTH]


def looks_like_token(value: object) -> bool:
    """Tell whether value has the shape of a token: prefix, length and alphabet."""
    return isinstance(value, str) and _TOKEN_RE.fullmatch(value) is not None


def looks_like_api_key(value: object) -> bool:
    return isinstance(value, str) and _API_KEY_RE.fullmatch(value) is not None
