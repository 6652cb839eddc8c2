"""A tunnel's rules at the edge as the client states them, and how they combine.

``--basic-auth user:password``, ``--allow-cidr NET`` and ``--deny-cidr NET``
(each repeatable) or the keys ``basic_auth``, ``allow_cidr`` and ``deny_cidr`` of
~/.tunnel/config, at its top level (every tunnel) or in a tunnel of its
``tunnels`` section. The server applies them before a request reaches the
tunnel; the client only checks, sends and names them (``client.protocol``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .protocol import ProtocolError, validate_rules

#: The config file's keys, each a list of strings, and the flag that says the same.
CONFIG_KEYS = {
    "basic_auth": "--basic-auth",
    "allow_cidr": "--allow-cidr",
    "deny_cidr": "--deny-cidr",
}


class RulesError(ValueError):
    """Rules that cannot be sent; the message says which and why, never a password."""


@dataclass(frozen=True)
class EdgeRules:
    """One tunnel's rules at the edge; empty when it has none."""

    #: ``user:password`` pairs; kept out of ``repr`` so that no log shows them.
    basic_auth: tuple[str, ...] = field(default=(), repr=False)
    allow_cidr: tuple[str, ...] = ()
    deny_cidr: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.basic_auth or self.allow_cidr or self.deny_cidr)

    def check(self) -> EdgeRules:
        """Return the rules if the server will take them; raise RulesError saying why not."""
        try:
            validate_rules(self.basic_auth, self.allow_cidr, self.deny_cidr)
        except ProtocolError as exc:
            raise RulesError(str(exc)) from None
        return self

    def over(self, defaults: EdgeRules) -> EdgeRules:
        """These rules where set, ``defaults`` for the kinds of rule these leave empty."""
        chosen = {f.name: getattr(self, f.name) or getattr(defaults, f.name) for f in fields(self)}
        return replace(self, **chosen)

    def expected(self) -> list[str]:
        """The kinds of rule the server must confirm in ``auth_ok`` (``AuthOk.rules``)."""
        kinds = ["basic auth"] if self.basic_auth else []
        kinds += ["allow"] if self.allow_cidr else []
        kinds += ["deny"] if self.deny_cidr else []
        return kinds

    def unconfirmed(self, confirmed: Sequence[str]) -> list[str]:
        """The kinds of rule asked for that the server's ``rules`` does not name."""
        names = [rule.split(" ", 1)[0] if rule != "basic auth" else rule for rule in confirmed]
        return [kind for kind in self.expected() if kind not in names]


#: A tunnel without rules (the default everywhere).
NO_RULES = EdgeRules()


def rules_from_config(where: str, data: dict[str, Any]) -> EdgeRules:
    """The rules among a config object's keys; raises RulesError for a malformed one."""
    values: dict[str, tuple[str, ...]] = {}
    for key in CONFIG_KEYS:
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, str):
            value = [value]
        if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise RulesError(f'{where}: {key!r} must be a list of strings, e.g. ["10.0.0.0/8"]')
        values[key] = tuple(value)
    try:
        return EdgeRules(**values).check()
    except RulesError as exc:
        raise RulesError(f"{where}: {exc}") from None
