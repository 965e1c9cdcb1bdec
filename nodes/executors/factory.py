"""The executor that serves a device pool."""

from __future__ import annotations

import logging

from nodes.executors.base import ExecutionError, Executor
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import DEFAULT_AWS_DEVICES, Settings
from qorchestra.devices import EMULATED_PREFIX

logger = logging.getLogger(__name__)

#: Local pools and the LocalSimulator backend that serves each.
LOCAL_POOLS = {"local-sv": "braket_sv", "local-dm": "braket_dm"}


def executor_for_pool(pool: str, settings: Settings) -> Executor:
    """``local-sv``/``local-dm``: the local simulators; ``aws-*``: the pool's Braket device;
    ``emu-<profile>``: Braket's emulator of the profile's device.

    Raises ValueError for a pool that is neither local, ``aws-*`` nor an ``emu-*`` pool with a
    device profile, and a non-retryable ExecutionError (``ConfigurationError``) naming
    everything an AWS pool lacks: its device ARN mapping, results bucket, credentials, region.
    """
    if pool in LOCAL_POOLS:
        from nodes.executors.local import LocalExecutor

        return LocalExecutor(
            LOCAL_POOLS[pool],
            threads=settings.simulator_threads,
            threading_layer=settings.simulator_threading_layer,
        )
    if pool.startswith("aws-"):
        from nodes.executors.aws import AwsDeviceExecutor

        arn = settings.aws_device_arn(pool)
        try:
            return AwsDeviceExecutor(
                arn or "",
                settings.aws_s3_bucket,
                settings.aws_s3_prefix,
                settings.aws_region,
                settings.aws_poll_timeout_s,
                reservation_arn=settings.aws_reservation(pool),
            )
        except ExecutionError as exc:
            if arn is not None:
                raise
            known = ", ".join(sorted({*DEFAULT_AWS_DEVICES, *settings.aws_devices}))
            raise ExecutionError(
                f"unknown AWS pool {pool!r} (known: {known}); {exc.message}",
                retryable=False,
                error_type=exc.error_type,
            ) from exc
    if pool.startswith(EMULATED_PREFIX):
        from nodes.executors.emulated import EmulatedExecutor

        profile = settings.emulated_profile(pool)
        if profile is None:
            known = ", ".join(sorted(settings.emulated_profiles()))
            raise ValueError(
                f"unknown emulated device {pool!r} (known: {known}; more profiles go in "
                "QORCH_DEVICE_PROFILES_DIR)"
            )
        return EmulatedExecutor(
            profile, queue_s=settings.emulator_queue(profile), seed=settings.emulator_seed
        )
    raise ValueError(
        f"unknown pool {pool!r}: expected local-sv, local-dm, aws-<device> (an aws-* pool "
        "mapped to a device ARN) or emu-<profile> (a device profile)"
    )


def serving_executor(pool: str, settings: Settings) -> Executor:
    """:func:`executor_for_pool`, except that a pool this node lacks the configuration for is
    served by an :class:`UnconfiguredExecutor`, so its fragments fail at once with the reason
    instead of waiting on the topic until their attempts time out.

    Raises ValueError for a pool nobody serves (the agent does not start).
    """
    try:
        return executor_for_pool(pool, settings)
    except ExecutionError as exc:
        logger.error(
            "pool %s is not configured on this node: %s. The agent runs anyway and fails every "
            "fragment it receives at once (not retryable) with this message; set what is "
            "missing and restart it",
            pool,
            exc.message,
            extra={"pool": pool},
        )
        return UnconfiguredExecutor(settings.aws_device_arn(pool) or pool, exc)


class UnconfiguredExecutor:
    """Stands in for a pool's executor when this node cannot serve the pool.

    Every fragment fails with ``reason``'s message, not retryable: running it again on this
    node cannot help, and the user learns at once what to set.
    """

    def __init__(self, backend: str, reason: ExecutionError) -> None:
        self._name = f"{backend} (not configured)"
        self.reason = reason

    @property
    def name(self) -> str:
        """The backend it would be, marked as not configured (shown in heartbeats)."""
        return self._name

    def execute(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """Fail: this node lacks the pool's configuration."""
        raise ExecutionError(
            f"this node cannot run pool {fragment.pool or '?'}: {self.reason.message}",
            retryable=False,
            error_type=self.reason.error_type,
        )

    def close(self) -> None:
        """Nothing to release."""
