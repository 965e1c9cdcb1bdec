"""docs/configuration.md, generated from :class:`qorchestra.config.Settings`.

One table row per setting: its environment variable spelled out in full, its default, the
values it takes and what it does (the field's description). The rows are grouped by the comment
headings of ``Settings`` in ``qorchestra/config.py``. Regenerate the page after changing a
setting::

    .venv/bin/python -m qorchestra.config_docs > docs/configuration.md

``tests/unit/test_docs.py`` fails while the committed page differs from :func:`render`.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import textwrap
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qorchestra import config
from qorchestra.config import (
    DEFAULT_AWS_DEVICES,
    DEFAULT_AWS_PRICES,
    DEFAULT_POOL_MAX_QUBITS,
    Settings,
)

#: The command that writes docs/configuration.md.
REGENERATE = ".venv/bin/python -m qorchestra.config_docs > docs/configuration.md"

#: Environment variables start with this (``Settings.model_config["env_prefix"]``).
PREFIX = "QORCH_"

#: Title of the settings that follow no comment heading in ``Settings``.
OTHER = "Other settings"

#: What the settings whose ``Field`` has no ``description`` (yet) do. Once a field in
#: ``qorchestra/config.py`` carries its own description, its entry here must go
#: (``tests/unit/test_docs.py`` says so).
UNDESCRIBED: dict[str, str] = {
    "kafka_session_timeout_ms": "Session timeout of every consumer group: how fast the "
    "fragments of a dead agent move to another member of its pool.",
    "kafka_heartbeat_interval_ms": "Heartbeat interval of every consumer group member.",
    "kafka_fetch_wait_max_ms": "fetch.wait.max.ms of every consumer on the latency path (all "
    "but the orchestrator's heartbeats): how long the broker may hold an empty fetch.",
    "kafka_message_timeout_ms": "Delivery timeout of a produced message; a producer stuck "
    "that long is rebuilt.",
    "api_host": "Address the REST API listens on.",
    "api_port": "Port the REST API listens on.",
    "grpc_host": "Address the API's gRPC server listens on.",
    "grpc_port": "Port the API's gRPC server listens on.",
    "kafka_sasl_username": "SASL username of every Kafka client.",
    "kafka_sasl_password": "SASL password of every Kafka client; never printed.",
    "kafka_ssl_key_password": "Password of the client private key (mTLS); never printed.",
    "max_programs": "Programs per job.",
    "max_shots": "Shots per binding.",
    "max_program_chars": "Characters per program.",
    "max_observables": "Observables per job.",
    "default_max_qubits": "Qubit limit of a pool that has none of its own (see "
    "[Pool qubit limits](#pool-qubit-limits)).",
    "pool_max_qubits": "pool -> qubit limit, over the built-in limits.",
    "node_pool": "The pool a node agent serves when `qorch node` is given no `--pool`.",
    "heartbeat_interval_s": "Seconds between an agent's heartbeats.",
    "aws_s3_prefix": "Key prefix of Braket task results in the bucket.",
    "aws_region": "AWS region of Braket and S3; empty = the device ARN's region (QPUs), "
    "then boto3's configured region (AWS_DEFAULT_REGION).",
    "aws_poll_timeout_s": "How long an agent waits for one Braket task; a task unfinished "
    "by then is cancelled and its fragment fails.",
    "log_level": "Level of the log lines every process writes.",
}

INTRO = f"""\
# Configuration

<!-- Generated from qorchestra/config.py by `python -m qorchestra.config_docs`: do not edit.
     Regenerate with: {REGENERATE} -->

One settings object (`qorchestra/config.py`, class `Settings`) configures every process: the
API, the orchestrator, the node agents and the `qorch` command. It is read from environment
variables prefixed `{PREFIX}`, once, when the process starts; there is no settings file. A
variable that names no setting is ignored, so spell names as the tables below do.

- Numbers and text are written as they are, switches as `true` or `false`, and maps as JSON
  objects, e.g. `QORCH_POOL_MAX_QUBITS='{{"local-sv": 6}}'`.
- A value that is refused (out of range, not a number, a weak admin key) stops the process with
  an error that names the setting; the value itself is not echoed.
- Empty `QORCH_DATABASE_URL` and `QORCH_KAFKA_BOOTSTRAP` mean the embedded Postgres and broker
  that `qorch up`, `qorch demo` and the tests start.
- Client commands find the API through `QORCH_API_URL` and `QORCH_GRPC_TARGET` (empty: from the
  host and port settings), and send the key in `QORCH_API_KEY` (REST and gRPC).
- Secrets never print with the settings: the password settings are secret values, the values of
  password-, secret-, token- and key-like names in `QORCH_KAFKA_EXTRA` print as `***`, and so
  does the password in `QORCH_DATABASE_URL` ([security.md](security.md)).

Deployments set these variables in `deploy/docker-compose.yml` and the Kubernetes ConfigMap and
Secrets ([deploy/README.md](../deploy/README.md)).
"""

_SECTION_REF = re.compile(r"^(?P<title>.*?)\s*\((?:see )?(?P<ref>[\w./-]+\.md)\)$")


@dataclass
class Section:
    """A group of settings under one comment heading of ``Settings``."""

    title: str
    ref: str | None = None
    fields: list[str] = field(default_factory=list)


def env_name(name: str) -> str:
    """The environment variable of setting ``name``, e.g. ``QORCH_LOG_LEVEL``."""
    return f"{PREFIX}{name.upper()}"


def _heading(comment: str) -> tuple[str, str | None]:
    """Title and linked document of a heading such as ``Security (docs/security.md)``."""
    match = _SECTION_REF.match(comment)
    if match:
        return match["title"], match["ref"]
    return comment, None


def _field_nodes() -> Iterator[ast.AnnAssign]:
    """The annotated assignments in the body of ``class Settings``, in source order."""
    tree = ast.parse(inspect.getsource(config))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == Settings.__name__:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    yield item


def sections() -> list[Section]:
    """Every setting, grouped by the comment headings in ``Settings``, in source order.

    A heading is a comment block after a blank line, right above a field; the fields that follow
    it belong to it until the next blank line that does not lead to a field under the same
    heading. Fields after a blank line with no heading go to :data:`OTHER`. A comment right
    under a field is a note on the next field, not a heading.
    """
    lines = inspect.getsource(config).splitlines()
    known = Settings.model_fields
    result: list[Section] = []
    current: Section | None = None
    for node in _field_nodes():
        name = typing.cast(ast.Name, node.target).id
        if name not in known:
            continue
        row = node.lineno - 2  # the line above, 0-based
        comments: list[str] = []
        while row >= 0 and lines[row].strip().startswith("#"):
            comments.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        after_blank = row < 0 or not lines[row].strip()
        if current is None or after_blank:
            if comments:
                title, ref = _heading(comments[0])
                current = Section(title, ref)
            elif current is None or current.title != OTHER:
                current = Section(OTHER)
            if not result or result[-1] is not current:
                result.append(current)
        current.fields.append(name)
    listed = {name for section in result for name in section.fields}
    missing = [name for name in known if name not in listed]
    if missing:
        result.append(Section(OTHER, None, missing))
    return _merge(result)


def _merge(found: list[Section]) -> list[Section]:
    """One section per title, in order of first appearance."""
    by_title: dict[str, Section] = {}
    for section in found:
        if section.title in by_title:
            by_title[section.title].fields.extend(section.fields)
        else:
            by_title[section.title] = section
    return list(by_title.values())


def _number(value: float) -> str:
    """A number as it is written in the environment: ``30``, ``0.2``, ``8388608``."""
    if isinstance(value, int):
        return str(value)
    text = format(value, "g")
    return text if "e" not in text else repr(value)


def _is_secret(value: object) -> bool:
    """Whether ``value`` is a pydantic ``SecretStr``."""
    return hasattr(value, "get_secret_value")


def default_text(name: str) -> str:
    """The default of setting ``name`` as a table cell (secrets only say whether one is set)."""
    info = Settings.model_fields[name]
    factory = info.default_factory
    value: Any = factory() if factory is not None else info.default  # type: ignore[call-arg]
    if _is_secret(value):
        return "empty" if not value.get_secret_value() else "(set)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{_number(value)}`"
    if isinstance(value, dict):
        return f"`{json.dumps(dict(value))}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def _bounds(name: str) -> str:
    """The range constraints of setting ``name``, e.g. ``≥ 1``, ``> 0`` or ``0 to 65535``."""
    low: tuple[str, str] | None = None
    high: tuple[str, str] | None = None
    for item in Settings.model_fields[name].metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(item, attr, None)
            if bound is None:
                continue
            if attr in ("ge", "gt"):
                low = (sign, _number(bound))
            else:
                high = (sign, _number(bound))
    if low and high and low[0] == "≥" and high[0] == "≤":
        return f"{low[1]} to {high[1]}"
    present = [pair for pair in (low, high) if pair is not None]
    return ", ".join(f"{sign} {bound}" for sign, bound in present)


def value_text(name: str) -> str:
    """What setting ``name`` takes: its type, its allowed values or its range."""
    info = Settings.model_fields[name]
    annotation = info.annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if annotation is bool:
        return "`true` or `false`"
    if origin is dict:
        return "JSON object"
    if isinstance(annotation, type) and _is_secret(annotation):
        return "secret text"
    if annotation is int or annotation is float:
        kind = "integer" if annotation is int else "number"
        bounds = _bounds(name)
        return f"{kind} {bounds}" if bounds else kind
    return "text"


def description_text(name: str) -> str:
    """What setting ``name`` does: its ``Field`` description, else :data:`UNDESCRIBED`."""
    text = Settings.model_fields[name].description or UNDESCRIBED.get(name)
    if not text:
        raise ValueError(
            f"{env_name(name)} has no description: give its Field a description= in "
            f"qorchestra/config.py, then run {REGENERATE}"
        )
    return " ".join(text.split()).replace("|", "\\|")


def _table(names: list[str]) -> list[str]:
    """The Markdown table of the settings ``names``."""
    rows = ["| variable | default | value | meaning |", "| --- | --- | --- | --- |"]
    for name in names:
        cells = [f"`{env_name(name)}`", default_text(name), value_text(name)]
        rows.append(f"| {' | '.join(cells)} | {description_text(name)} |")
    return rows


def _ref_link(ref: str) -> str:
    """A link, relative to docs/, to ``ref`` (a path from the repository root)."""
    target = ref.removeprefix("docs/") if ref.startswith("docs/") else f"../{ref}"
    return f"[{ref.removeprefix('docs/')}]({target})"


def _paragraph(text: str) -> list[str]:
    """``text`` as Markdown lines of at most 100 characters."""
    return textwrap.wrap(text, width=96, break_long_words=False, break_on_hyphens=False)


def _builtin_tables() -> list[str]:
    """The pools' built-in qubit limits, device ARNs and prices."""
    out = ["## Pool qubit limits", ""]
    out += _paragraph(
        "The qubit limit of each pool the platform knows (an emulated pool's is its device's "
        "qubit count, at most the 13 a density matrix allows); any other pool takes "
        "`QORCH_DEFAULT_MAX_QUBITS`, and `QORCH_POOL_MAX_QUBITS` overrides any of them."
    )
    out += ["", "| pool | qubits |", "| --- | --- |"]
    out += [f"| `{pool}` | {qubits} |" for pool, qubits in DEFAULT_POOL_MAX_QUBITS.items()]
    out += ["", "## AWS devices", ""]
    out += _paragraph(
        "The Braket devices behind the managed-simulator pools; `QORCH_AWS_DEVICES` adds "
        'pools (QPUs: `{"aws-<name>": "<device ARN>"}`) or replaces these.'
    )
    out += ["", "| pool | device ARN |", "| --- | --- |"]
    out += [f"| `{pool}` | `{arn}` |" for pool, arn in DEFAULT_AWS_DEVICES.items()]
    out += ["", "## AWS prices", ""]
    out += _paragraph(
        "USD per quantum task and per shot, used for cost estimates and caps "
        "([security.md](security.md#cost-caps)); an emulated pool costs what its device "
        "costs ([emulated-devices.md](emulated-devices.md)), a pool not named takes "
        "`default`, and `QORCH_AWS_PRICES` overrides any of them."
    )
    out += ["", "| pool | per task | per shot |", "| --- | --- | --- |"]
    for pool, price in DEFAULT_AWS_PRICES.items():
        per_task = _number(price["per_task"])
        per_shot = _number(price["per_shot"])
        out.append(f"| `{pool}` | {per_task} | {per_shot} |")
    return out


def render() -> str:
    """The whole of docs/configuration.md."""
    out = [INTRO.rstrip("\n"), ""]
    for section in sections():
        out += [f"## {section.title}", ""]
        if section.ref:
            out += [f"See {_ref_link(section.ref)}.", ""]
        out += [*_table(section.fields), ""]
    out += _builtin_tables()
    return "\n".join(out) + "\n"


def main() -> None:
    """Print docs/configuration.md: ``python -m qorchestra.config_docs > docs/configuration.md``."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
