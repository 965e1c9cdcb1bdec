"""README's "Configuration" table names every setting, spelled out in full, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from qorchestra.config import Settings

README = Path(__file__).parents[2] / "README.md"


def _configuration_table() -> str:
    """The rows of the table in README's "Configuration" section."""
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "no table in README's Configuration section"
    return "\n".join(rows)


def _documented() -> set[str]:
    """Every `QORCH_...` name in the table's variable column."""
    names: set[str] = set()
    for row in _configuration_table().splitlines():
        variables = row.split("|")[1]
        names |= set(re.findall(r"`(QORCH_[A-Z0-9_]+)`", variables))
    return names


def test_every_setting_is_in_the_configuration_table() -> None:
    expected = {f"QORCH_{name.upper()}" for name in Settings.model_fields}
    missing = sorted(expected - _documented())
    assert not missing, f"add to README's Configuration table: {', '.join(missing)}"


def test_the_configuration_table_names_only_real_settings() -> None:
    expected = {f"QORCH_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(_documented() - expected)
    assert not unknown, f"not settings of qorchestra/config.py: {', '.join(unknown)}"


def test_variables_are_spelled_out_in_full() -> None:
    """No `_SUFFIX` shorthand: every name can be found by searching for it."""
    shorthand = re.findall(r"`(_[A-Z0-9_]+)`", _configuration_table())
    assert not shorthand, f"spell out {', '.join(shorthand)}"
