"""The emulated-device side of the ``qorch`` command: ``qorch devices list`` shows the device
profiles behind the ``emu-*`` pools, ``qorch devices snapshot ARN`` saves a real Braket
device's properties as a new profile (docs/emulated-devices.md).

Braket and boto3 are imported only when a snapshot is taken: ``qorch --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from qorchestra.config import Settings
from qorchestra.devices import (
    PROFILE_NAME,
    SHIPPED_PROFILES,
    ProfileError,
    check_profile,
    profile_document,
    write_profile,
)

console = Console()

#: Exit status of a snapshot that cannot start: no AWS credentials, a bad name.
EXIT_CONFIG = 2


def add_commands(sub: Any) -> None:
    """Add ``qorch devices list`` and ``qorch devices snapshot`` to the command's parsers."""
    devices = sub.add_parser(
        "devices", help="emulated devices: the device profiles of the emu-* pools"
    )
    devices_sub = devices.add_subparsers(dest="devices_command", required=True)
    devices_sub.add_parser(
        "list", help="every device profile: its pool, qubits, native gates and price"
    ).set_defaults(func=cmd_devices_list)
    snapshot = devices_sub.add_parser(
        "snapshot",
        help="save a Braket device's properties as a device profile (needs AWS credentials)",
    )
    snapshot.add_argument("arn", help="the device's ARN, e.g. arn:aws:braket:...:device/qpu/...")
    snapshot.add_argument(
        "--name", help="the profile's name, its pool emu-NAME (default: from the ARN)"
    )
    snapshot.add_argument(
        "--dir",
        help="where to write NAME.json (default QORCH_DEVICE_PROFILES_DIR, else the current "
        "folder)",
    )
    snapshot.add_argument(
        "--per-task", type=float, help="USD per task (default: as the price table says)"
    )
    snapshot.add_argument(
        "--per-shot", type=float, help="USD per shot (default: as the price table says)"
    )
    snapshot.set_defaults(func=cmd_devices_snapshot)


def cmd_devices_list(args: argparse.Namespace, settings: Settings) -> int:
    """A table of the profiles this installation knows."""
    table = Table(title="emulated devices")
    for col in ("pool", "device", "qubits", "native gates", "USD/task", "USD/shot", "queue s"):
        table.add_column(col)
    for pool, profile in sorted(settings.emulated_profiles().items()):
        price = settings.aws_price(pool)
        shortest, longest = settings.emulator_queue(profile)
        table.add_row(
            pool,
            profile.device,
            f"{profile.qubits} (runs {settings.max_qubits(pool)})",
            " ".join(profile.native_gates),
            f"{price['per_task']:g}",
            f"{price['per_shot']:g}",
            f"{shortest:g}-{longest:g}",
        )
    console.print(table)
    return 0


def profile_name(arn: str) -> str:
    """A profile name from a device ARN: ``.../qpu/iqm/Garnet`` -> ``garnet``."""
    last = arn.rstrip("/").rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9-]+", "-", last).strip("-")


def cmd_devices_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    """Read the device's properties from Braket and write them as profile NAME.json."""
    name = args.name or profile_name(args.arn)
    if not PROFILE_NAME.fullmatch(name):
        _fail(f"{name!r} is not a profile name: lower-case letters, digits and '-' (--name)")
        return EXIT_CONFIG
    path = Path(args.dir or settings.device_profiles_dir or ".") / f"{name}.json"

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from braket.aws import AwsDevice, AwsSession

    from nodes.executors.aws import CREDENTIALS_HELP
    from qorchestra.devices.emulation import build_emulator

    region = AwsDevice.get_device_region(args.arn) or settings.aws_region or None
    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        _fail(f"cannot read {args.arn}: {CREDENTIALS_HELP}")
        return EXIT_CONFIG
    try:
        device = AwsDevice(args.arn, aws_session=AwsSession(boto_session=session))
        properties = json.loads(device.properties.json())
    except (BotoCoreError, ClientError, ValueError) as exc:
        _fail(f"cannot read the properties of {args.arn}: {exc}")
        return 1
    document = profile_document(
        properties,
        device=f"{device.provider_name} {device.name}".strip(),
        arn=args.arn,
        price=_price(args, settings, name),
        source=f"Snapshot of {args.arn} taken {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
        "`qorch devices snapshot`.",
    )
    try:
        build_emulator(check_profile(path, document))
        profile = write_profile(path, document)
    except ProfileError as exc:
        _fail(str(exc))
        return 1
    except Exception as exc:  # Braket's emulator refuses the properties (ValueError, KeyError)
        _fail(f"Braket's LocalEmulator cannot emulate {args.arn}: {exc}")
        return 1
    console.print(
        f"saved {profile.device} ({profile.qubits} qubits) as {path}: pool {profile.pool}, "
        f"USD {profile.price['per_task']:g} per task and {profile.price['per_shot']:g} per shot"
    )
    configured = settings.device_profiles_dir
    if configured and Path(configured).resolve() == path.parent.resolve():
        console.print("QORCH_DEVICE_PROFILES_DIR holds it: restart the API and the agents")
    else:
        console.print(
            f"serve it with QORCH_DEVICE_PROFILES_DIR={path.parent} for the API and the agents, "
            f"e.g. QORCH_DEVICE_PROFILES_DIR={path.parent} qorch up --pool {profile.pool}=1"
        )
    return 0


def _price(args: argparse.Namespace, settings: Settings, name: str) -> dict[str, float]:
    """``--per-task``/``--per-shot``, else the price of a shipped profile of the same device,
    else the price table's entry for pool emu-NAME (``default`` unless one is configured)."""
    known = next((p for p in SHIPPED_PROFILES.values() if p.arn == args.arn), None)
    price = dict(known.price) if known else settings.aws_price(f"emu-{name}")
    if args.per_task is not None:
        price["per_task"] = args.per_task
    if args.per_shot is not None:
        price["per_shot"] = args.per_shot
    return price


def _fail(message: str) -> None:
    print(f"qorch devices snapshot: {message}", file=sys.stderr)
