"""Emulated devices: the device profiles behind the ``emu-<profile>`` pools
(docs/emulated-devices.md).

A profile is one JSON file, ``<profile>.json``: a real device's Braket properties (what
``AwsDevice(arn).properties`` returns), its price per task and per shot, and the emulated
queue's delay. The API reads a profile's qubit count and price; a node agent builds Braket's
``LocalEmulator`` from its properties (``nodes.executors.emulated``). Pure JSON here: no Braket.
"""

from qorchestra.devices.profiles import (
    EMULATED_PREFIX,
    PROFILE_NAME,
    SHIPPED_DIR,
    SHIPPED_PROFILES,
    DeviceProfile,
    ProfileError,
    check_profile,
    emulated_profiles,
    profile_document,
    read_profile,
    write_profile,
)

__all__ = [
    "EMULATED_PREFIX",
    "PROFILE_NAME",
    "SHIPPED_DIR",
    "SHIPPED_PROFILES",
    "DeviceProfile",
    "ProfileError",
    "check_profile",
    "emulated_profiles",
    "profile_document",
    "read_profile",
    "write_profile",
]
