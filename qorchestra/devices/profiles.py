"""Device profiles: reading, checking and writing ``<profile>.json``. Pure JSON, no Braket.

A profile file holds one JSON object::

    {
      "device": "IQM Garnet",                  # what it models, for people
      "arn": "arn:aws:braket:...",             # the real device (empty when there is none)
      "price": {"per_task": 0.3, "per_shot": 0.00145},   # USD, as Braket bills the device
      "queue_s": [0.05, 0.5],                  # emulated queue: a delay per task, in seconds
      "source": "where the numbers come from",
      "properties": {...}                      # the device's Braket properties
    }

``properties`` is what ``AwsDevice(arn).properties`` returns (a ``DeviceCapabilities`` schema
such as ``braket.device_schema.iqm.iqm_device_capabilities``), so that a snapshot of a real
device is a profile as it stands. The profiles shipped with qorchestra are in ``profiles/``
beside this module; ``QORCH_DEVICE_PROFILES_DIR`` adds more (``qorch devices snapshot``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

logger = logging.getLogger(__name__)

#: Pools of emulated devices are named ``emu-<profile>``.
EMULATED_PREFIX = "emu-"

#: A profile's name: its file name without ``.json``, as the pool name carries it.
PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")

#: The profiles shipped with qorchestra (package data).
SHIPPED_DIR = Path(__file__).resolve().parent / "profiles"

#: Emulated queue of a profile that names none: a delay per task drawn between these, seconds.
DEFAULT_QUEUE_S = (0.05, 0.5)


class ProfileError(ValueError):
    """A profile file is missing, unreadable or not a valid profile; the message names it."""


#: Native gate sets ``qorchestra.devices.native`` compiles to, by family.
IQM = frozenset({"prx", "cz"})
IONQ = frozenset({"gpi", "gpi2", "zz"})


@dataclass(frozen=True)
class DeviceGates:
    """A device's gates, as its properties name them (lower case): ``native`` (what it runs
    in a verbatim box) and ``supported`` (what its compiler takes outside one)."""

    native: frozenset[str]
    supported: frozenset[str]

    @classmethod
    def of(cls, properties: Mapping[str, Any]) -> DeviceGates:
        """The gates of a device's properties (Braket's ``DeviceCapabilities`` as a dict)."""
        action = properties.get("action", {}).get("braket.ir.openqasm.program", {})
        return cls(
            frozenset(str(g).lower() for g in properties["paradigm"]["nativeGateSet"]),
            frozenset(str(g).lower() for g in action.get("supportedOperations", [])),
        )

    @property
    def family(self) -> frozenset[str] | None:
        """The native gate family ``qorchestra.devices.native`` compiles to (``IQM``,
        ``IONQ``), or None when it has no compiler for the device's native gates."""
        for known in (IQM, IONQ):
            if known <= self.native:
                return known
        return None


@dataclass(frozen=True, eq=False)
class DeviceProfile:
    """One emulated device: a profile file, read and checked."""

    name: str
    device: str
    arn: str
    source: str
    #: USD per quantum task and per shot: ``{"per_task": ..., "per_shot": ...}``.
    price: Mapping[str, float]
    #: Shortest and longest emulated queue delay of one task, in seconds.
    queue_s: tuple[float, float]
    #: The device's Braket properties (a ``DeviceCapabilities`` document), read-only.
    properties: Mapping[str, Any] = field(repr=False)
    path: Path | None = None

    @property
    def pool(self) -> str:
        """The pool this profile serves: ``emu-<name>``."""
        return f"{EMULATED_PREFIX}{self.name}"

    @property
    def qubits(self) -> int:
        """The device's qubit count."""
        return int(self.properties["paradigm"]["qubitCount"])

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of :meth:`emulator_properties`: what names the device its emulator judges
        programs as (a profile file that changes, changes it)."""
        text = json.dumps(self.emulator_properties(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def refusal(self, reason: str) -> str:
        """Why a program does not run on this device, ``reason`` being the emulator's message:
        what a node agent fails the fragment with, and the API refuses the submission with."""
        return f"the program does not run on {self.device} (pool {self.pool}): {reason}"

    @property
    def gates(self) -> DeviceGates:
        """The device's native and supported gates."""
        return DeviceGates.of(self.properties)

    @property
    def native_gates(self) -> list[str]:
        """The device's native gates, as its properties name them."""
        return [str(gate) for gate in self.properties["paradigm"]["nativeGateSet"]]

    def emulator_properties(self) -> dict[str, Any]:
        """The properties Braket's ``LocalEmulator`` is built from: a copy of
        :attr:`properties` whose connectivity graph has every qubit as a key.

        Braket's emulator (``ResultTypeValidator``, SDK 1.127) accepts a result type's qubit
        only where the qubit is a key of the connectivity graph. An all-to-all device reports
        an empty graph (IonQ), and a device may list an edge under one of its ends only, so a
        probability or expectation on such a qubit would be refused although the device
        measures it. The graph is completed without changing what it connects: an empty graph
        (all to all) lists every pair, and a qubit with no key gets an empty list.
        """
        properties = copy.deepcopy(_plain(self.properties))
        connectivity = properties["paradigm"].setdefault("connectivity", {})
        graph: dict[str, list[str]] = dict(connectivity.get("connectivityGraph") or {})
        labels = self._qubit_labels()
        if not graph:
            graph = {q: [p for p in labels if p != q] for q in labels}
        for q in labels:
            graph.setdefault(q, [])
        connectivity["connectivityGraph"] = graph
        return properties

    def _qubit_labels(self) -> list[str]:
        """The device's qubits as its calibration data names them (else ``0 .. n-1``)."""
        standardized = self.properties.get("standardized") or {}
        one_qubit = standardized.get("oneQubitProperties") or {}
        if one_qubit:
            return sorted((str(q) for q in one_qubit), key=int)
        return [str(q) for q in range(self.qubits)]


def profile_document(
    properties: Mapping[str, Any],
    *,
    device: str,
    arn: str = "",
    price: Mapping[str, float],
    queue_s: tuple[float, float] = DEFAULT_QUEUE_S,
    source: str = "",
) -> dict[str, Any]:
    """The JSON document of a profile, keys in the order people read them."""
    return {
        "device": device,
        "arn": arn,
        "price": {"per_task": price["per_task"], "per_shot": price["per_shot"]},
        "queue_s": list(queue_s),
        "source": source,
        "properties": _plain(properties),
    }


def write_profile(path: Path, document: Mapping[str, Any]) -> DeviceProfile:
    """Check ``document`` as a profile named after ``path`` and write it there (atomically,
    the folder created if needed); returns the profile. ProfileError when it is not valid."""
    profile = check_profile(path, document)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return profile


def read_profile(path: Path) -> DeviceProfile:
    """The profile in ``path``; ProfileError naming the file and what is wrong with it."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"device profile {path}: {exc}") from exc
    return check_profile(path, document)


def emulated_profiles(directory: str | Path = "") -> dict[str, DeviceProfile]:
    """Every known profile by pool: the shipped ones, then those in ``directory`` (a profile
    there replaces a shipped one of the same name). A missing ``directory`` adds nothing; a
    file there that is not a valid profile is left out, with a warning naming it."""
    profiles = dict(SHIPPED_PROFILES)
    if directory:
        for profile in _directory_profiles(Path(directory)):
            profiles[profile.pool] = profile
    return profiles


def check_profile(path: Path, document: Any) -> DeviceProfile:
    """``document`` as the profile in ``path``, checked; ProfileError names ``path`` and every
    problem found."""
    name = path.name.removesuffix(".json")
    problems: list[str] = []
    if not PROFILE_NAME.fullmatch(name) or not path.name.endswith(".json"):
        problems.append(
            f"the file name must be <profile>.json, <profile> in lower-case letters, digits "
            f"and '-' (it names pool {EMULATED_PREFIX}<profile>)"
        )
    if not isinstance(document, dict):
        raise ProfileError(f"device profile {path}: expected a JSON object")
    device = document.get("device")
    if not isinstance(device, str) or not device:
        problems.append("'device' must name the device")
    price = document.get("price")
    if not isinstance(price, dict) or not all(
        _non_negative(price.get(key)) for key in ("per_task", "per_shot")
    ):
        problems.append("'price' must hold 'per_task' and 'per_shot', USD of 0 or more")
    queue = document.get("queue_s", list(DEFAULT_QUEUE_S))
    if not (
        isinstance(queue, list)
        and len(queue) == 2
        and all(_non_negative(v) for v in queue)
        and queue[0] <= queue[1]
    ):
        problems.append("'queue_s' must be [shortest, longest], seconds, 0 <= shortest <= longest")
    properties = document.get("properties")
    paradigm = properties.get("paradigm") if isinstance(properties, dict) else None
    if not isinstance(paradigm, dict):
        problems.append("'properties' must be the device's Braket properties, with 'paradigm'")
    else:
        qubits = paradigm.get("qubitCount")
        if not isinstance(qubits, int) or isinstance(qubits, bool) or qubits < 1:
            problems.append("'properties.paradigm.qubitCount' must be a whole number, 1 or more")
        gates = paradigm.get("nativeGateSet")
        if not isinstance(gates, list) or not gates:
            problems.append("'properties.paradigm.nativeGateSet' must list the native gates")
    for key in ("arn", "source"):
        if not isinstance(document.get(key, ""), str):
            problems.append(f"'{key}' must be text")
    if problems:
        raise ProfileError(f"device profile {path}: " + "; ".join(problems))
    assert isinstance(price, dict) and isinstance(properties, dict)
    return DeviceProfile(
        name=name,
        device=str(device),
        arn=document.get("arn", ""),
        source=document.get("source", ""),
        price=MappingProxyType({k: float(price[k]) for k in ("per_task", "per_shot")}),
        queue_s=(float(queue[0]), float(queue[1])),
        properties=MappingProxyType(properties),
        path=path,
    )


def _non_negative(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _plain(value: Any) -> Any:
    """``value`` with read-only mappings turned back into dicts (for copying and JSON)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# Profiles read from QORCH_DEVICE_PROFILES_DIR, by file and its modification stamp: settings
# look them up on every submission, and a file is parsed again only once it changes.
_read_lock = threading.Lock()
_read: dict[Path, tuple[tuple[int, int], DeviceProfile]] = {}


def _directory_profiles(directory: Path) -> list[DeviceProfile]:
    """The valid profiles in ``directory`` (none where it does not exist)."""
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return []
    profiles = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamp = (stat.st_mtime_ns, stat.st_size)
        with _read_lock:
            known = _read.get(path)
        if known is not None and known[0] == stamp:
            profiles.append(known[1])
            continue
        try:
            profile = read_profile(path)
        except ProfileError as exc:
            logger.warning("%s; it serves no pool", exc)
            continue
        with _read_lock:
            _read[path] = (stamp, profile)
        profiles.append(profile)
    return profiles


def _shipped() -> Mapping[str, DeviceProfile]:
    profiles = (read_profile(path) for path in sorted(SHIPPED_DIR.glob("*.json")))
    return MappingProxyType({p.pool: p for p in profiles})


#: The profiles shipped with qorchestra, by pool (``emu-garnet``, ``emu-forte``).
SHIPPED_PROFILES: Mapping[str, DeviceProfile] = _shipped()
