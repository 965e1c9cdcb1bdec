"""The docs stay true: docs/configuration.md is what the code generates, README.md stays a front
door, and every relative link in README.md, docs/ and deploy/README.md leads somewhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from qorchestra.config import Settings
from qorchestra.config_docs import REGENERATE, UNDESCRIBED, env_name, render

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
README_MAX_LINES = 200

#: Environment variables the docs may name that are not settings of qorchestra/config.py.
NOT_SETTINGS = {
    "QORCH_TEST_DATABASE_URL",  # tests/: an outside Postgres for the suite
    "QORCH_TEST_KAFKA_BOOTSTRAP",  # tests/: an outside broker for the suite
    "QORCH_FUZZ_EXPLORE",  # tests/: draw new fuzz examples
    "QORCH_IMAGE",  # deploy/docker-compose.yml: the image to run
}

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def _settings() -> set[str]:
    """Every setting's environment variable, spelled out in full."""
    return {env_name(name) for name in Settings.model_fields}


def _pages() -> list[Path]:
    """The Markdown pages whose links are checked."""
    return [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "README.md"]


def _prose(text: str) -> str:
    """``text`` without fenced code blocks (a ``#`` or ``[x](y)`` in code is not Markdown)."""
    return _FENCE.sub("", text)


def _links(text: str) -> Iterator[str]:
    """Every link target in the prose of ``text``: inline links and reference definitions."""
    prose = _CODE_SPAN.sub("", _prose(text))
    yield from _LINK.findall(prose)
    yield from _REFERENCE.findall(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading)  # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes for ``page``'s headings (``-1``, ``-2`` for repeats)."""
    text = _prose(page.read_text())
    found: set[str] = set(_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _, heading in _HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def test_configuration_page_is_generated_from_settings() -> None:
    """docs/configuration.md is exactly what ``qorchestra.config_docs.render()`` gives."""
    expected = render()
    actual = CONFIGURATION.read_text() if CONFIGURATION.exists() else ""
    assert actual == expected, f"docs/configuration.md is stale: run {REGENERATE}"


def test_every_setting_has_a_row_and_rows_name_only_settings() -> None:
    """One table row per setting, its variable spelled out in full; no row for anything else."""
    rows = [line for line in render().splitlines() if line.startswith("| `QORCH_")]
    named = [re.match(r"\| `(QORCH_[A-Z0-9_]+)`", row) for row in rows]
    variables = [match[1] for match in named if match]
    assert len(variables) == len(set(variables)), "a setting has two rows"
    assert set(variables) == _settings()


def test_fallback_descriptions_are_still_needed() -> None:
    """An entry of ``UNDESCRIBED`` goes once its field has a ``description`` of its own."""
    fields = Settings.model_fields
    stale = sorted(n for n in UNDESCRIBED if n not in fields or fields[n].description)
    assert not stale, f"remove from UNDESCRIBED in qorchestra/config_docs.py: {', '.join(stale)}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_real_settings(page: Path) -> None:
    """Every `QORCH_...` name in the docs is a setting (or a known test or deploy variable)."""
    names = set(re.findall(r"\bQORCH_[A-Z0-9_]+\b(?![*])", page.read_text()))
    unknown = sorted(names - _settings() - NOT_SETTINGS)
    assert not unknown, f"{page.relative_to(ROOT)} names no such setting: {', '.join(unknown)}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_variables_are_spelled_out_in_full(page: Path) -> None:
    """No `_SUFFIX` shorthand for a setting: every name can be found by searching for it."""
    shorthand = re.findall(r"`(_[A-Z0-9_]+)`", page.read_text())
    assert not shorthand, f"spell out {', '.join(shorthand)} in {page.relative_to(ROOT)}"


def test_readme_is_a_front_door() -> None:
    """README.md stays short; the guides live in docs/."""
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move the detail to docs/"
    )


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link leads to a file that exists, and every #anchor into a Markdown page
    to one of its headings. Web links (http, https, mailto) are not followed."""
    broken: list[str] = []
    for target in _links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto:, ...
        path_part, _, anchor = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {'; '.join(broken)}"


def test_slug_is_githubs() -> None:
    """Spot checks of the anchor rule against headings GitHub renders."""
    assert slug("How a job flows") == "how-a-job-flows"
    assert slug("The `qorch` command") == "the-qorch-command"
    assert slug("AWS (aws-* pools)") == "aws-aws--pools"
    assert slug("Against qiskit-addon-cutting") == "against-qiskit-addon-cutting"
