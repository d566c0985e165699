"""The process's own families: dialerd's version, and prometheus_client's process,
platform and garbage-collector collectors."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Info
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from dialerd import __version__

BUILD_INFO = Info("dialerd_build", "Version of the running dialerd.", registry=None)
FAMILIES = (BUILD_INFO,)


class PidOnlyProcessCollector(ProcessCollector):
    """prometheus_client's ``process_*`` metrics, also under systemd's ``ProcSubset=pid``
    (the unit sets it): there ``/proc/stat``, where it reads the boot time, is hidden, so
    the boot time comes from ``CLOCK_BOOTTIME`` instead. The rest is read from
    ``/proc/self``, which stays visible."""

    def _boot_time(self) -> float:
        try:
            read = super()._boot_time()  # type: ignore[no-untyped-call]
        except OSError:
            read = None
        if read is None:
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return float(read)


def declare() -> None:
    BUILD_INFO.info({"version": __version__})


def register_collectors(registry: CollectorRegistry) -> None:
    """The process, platform and GC collectors, each made for ``registry``."""
    PidOnlyProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
