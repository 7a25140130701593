"""Generation names: what a replay may be called (no service needed for the name rules)."""

from __future__ import annotations

import pytest

from lakehouse.generations import GenerationError, check_name


@pytest.mark.parametrize("name", ["g2", "2026-11-29", "rebuild_1.b"])
def test_plain_names_are_generation_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["CURRENT", "models"])
def test_names_the_root_already_uses_are_refused(name):
    with pytest.raises(GenerationError, match="reserved"):
        check_name(name)


@pytest.mark.parametrize("name", ["", "../g1", "g 2", "-g"])
def test_names_that_are_not_plain_are_refused(name):
    with pytest.raises(GenerationError, match="not a generation name"):
        check_name(name)
