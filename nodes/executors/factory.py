"""The executor that serves a device pool."""

from __future__ import annotations

from nodes.executors.base import Executor
from qorch.config import DEFAULT_AWS_DEVICES, Settings

#: Local pools and the LocalSimulator backend that serves each.
LOCAL_POOLS = {"local-sv": "braket_sv", "local-dm": "braket_dm"}


def executor_for_pool(pool: str, settings: Settings) -> Executor:
    """``local-sv``/``local-dm``: the local simulators; ``aws-*``: the pool's Braket device.

    Raises ValueError for a pool nobody serves, and ExecutionError when an AWS pool lacks its
    configuration (credentials, results bucket, region).
    """
    if pool in LOCAL_POOLS:
        from nodes.executors.local import LocalExecutor

        return LocalExecutor(LOCAL_POOLS[pool], threads=settings.simulator_threads)
    if pool.startswith("aws-"):
        arn = settings.aws_device_arn(pool)
        if arn is None:
            known = sorted({*DEFAULT_AWS_DEVICES, *settings.aws_devices})
            raise ValueError(
                f"unknown AWS pool {pool!r}: map it to a Braket device ARN with QORCH_AWS_DEVICES "
                f'(e.g. \'{{"{pool}": "arn:aws:braket:..."}}\'); known AWS pools: '
                f"{', '.join(known)}"
            )
        from nodes.executors.aws import AwsDeviceExecutor

        return AwsDeviceExecutor(
            arn,
            settings.aws_s3_bucket,
            settings.aws_s3_prefix,
            settings.aws_region,
            settings.aws_poll_timeout_s,
        )
    raise ValueError(
        f"unknown pool {pool!r}: expected local-sv, local-dm or aws-<device> "
        "(an aws-* pool mapped to a device ARN)"
    )
