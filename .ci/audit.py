"""Fail if an installed package matches an advisory in .ci/advisories.toml. Offline.

    python .ci/audit.py [--advisories FILE]

Checks the environment it runs in (CI's fresh virtualenv built from
requirements*.txt), so it sees exactly the versions the floors let in.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Advisory:
    package: str
    vulnerable: SpecifierSet
    id: str
    summary: str


def load(path: Path) -> list[Advisory]:
    entries = tomllib.loads(path.read_text())["advisory"]
    return [
        Advisory(
            canonicalize_name(entry["package"]),
            SpecifierSet(entry["vulnerable"]),
            entry["id"],
            entry["summary"],
        )
        for entry in entries
    ]


def installed() -> dict[str, Version]:
    return {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in metadata.distributions()
    }


def findings(advisories: Iterable[Advisory], versions: Mapping[str, Version]) -> list[str]:
    """One line per installed package version that an advisory covers."""
    found = []
    for advisory in advisories:
        version = versions.get(advisory.package)
        if version is not None and advisory.vulnerable.contains(version, prereleases=True):
            found.append(
                f"{advisory.package} {version}: {advisory.id} ({advisory.summary}); "
                f"affected {advisory.vulnerable}"
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--advisories", type=Path, default=HERE / "advisories.toml")
    args = parser.parse_args(argv)
    advisories = load(args.advisories)
    found = findings(advisories, installed())
    for line in found:
        print(f"vulnerable: {line}", file=sys.stderr)
    print(f"audit: {len(advisories)} advisories, {len(found)} installed package(s) affected")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
