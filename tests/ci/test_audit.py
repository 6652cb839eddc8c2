"""The offline dependency audit (.ci/audit.py) finds what its advisories describe."""

import importlib.util
import sys
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
assert _spec is not None and _spec.loader is not None
audit = importlib.util.module_from_spec(_spec)
sys.modules["ci_audit"] = audit  # dataclasses look their module up there
_spec.loader.exec_module(audit)

TWISTED = audit.Advisory("twisted", SpecifierSet("<24.7.0"), "CVE-X", "pipelining")


def test_a_version_in_the_affected_range_is_found():
    found = audit.findings([TWISTED], {"twisted": Version("24.3.0")})
    assert found == ["twisted 24.3.0: CVE-X (pipelining); affected <24.7.0"]


def test_a_fixed_or_absent_package_is_not_found():
    assert audit.findings([TWISTED], {"twisted": Version("24.7.0")}) == []
    assert audit.findings([TWISTED], {}) == []


def test_the_project_advisories_parse_and_the_installed_environment_is_clean():
    advisories = audit.load(ROOT / ".ci" / "advisories.toml")
    assert {a.package for a in advisories} >= {"django", "twisted", "autobahn"}
    assert audit.findings(advisories, audit.installed()) == []
