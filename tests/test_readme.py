"""The README stays true: its policy example is a valid policy, its commands exist."""

from __future__ import annotations

import re

from router import parse_policy
from tandem.cli import build_parser
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_policy_example_is_valid():
    (block,) = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    policy = parse_policy(block, source="README.md")
    assert policy.cloud.allowed and "health" in {t for t, a in policy.privacy.actions.items() if a == "local_only"}


def test_documented_subcommands_exist():
    mentioned = set(re.findall(r"\btandem ([a-z][a-z-]+)", README))
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert mentioned and mentioned <= set(subparsers.choices), mentioned - set(subparsers.choices)
    assert "make demo" in README and "make test" in README
