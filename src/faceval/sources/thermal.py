"""Holding long embedding runs back while the CPU is too hot (fanless boxes, laptops on a sofa).

`ThermalGuard` says when to stop starting new work: from above ``max_temp`` until the CPU has cooled to
``max_temp - hysteresis``, so that a run does not flap on and off around the limit. A machine that exposes no
temperature gets one warning and runs unguarded: a guard must never be the reason a run stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")
# Sensor names that measure the CPU (package, cores, SoC) rather than the battery, Wi-Fi card or disk.
_CPU_SENSOR_NAMES = ("cpu", "x86_pkg_temp", "coretemp", "k10temp", "zenpower", "tctl", "tdie", "package", "soc")


def _thermal_zones(root: Path) -> list[tuple[str, float]]:
    readings = []
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            millidegrees = int((zone / "temp").read_text().strip())
            kind = (zone / "type").read_text().strip()
        except (OSError, ValueError):
            continue  # a disabled zone refuses to be read; the others still count
        readings.append((kind, millidegrees / 1000))
    return readings


def _psutil_sensors() -> list[tuple[str, float]]:
    sensors = getattr(psutil, "sensors_temperatures", None)  # Linux and FreeBSD only
    if sensors is None:
        return []
    try:
        found = sensors()
    except (OSError, RuntimeError):
        return []
    return [
        (f"{chip} {entry.label}", float(entry.current))
        for chip, entries in found.items()
        for entry in entries
        if entry.current is not None
    ]


def read_cpu_temperature(thermal_root: Path = THERMAL_ROOT) -> float | None:
    """The CPU temperature in °C, or None where the machine exposes none.

    Reads ``thermal_root/thermal_zone*/temp``, else psutil's sensors; the hottest sensor named as a CPU counts,
    or the hottest of all where none is (better to pause early than to cook an unnamed SoC).
    """
    readings = _thermal_zones(thermal_root) or _psutil_sensors()
    if not readings:
        return None
    cpu = [value for name, value in readings if any(key in name.lower() for key in _CPU_SENSOR_NAMES)]
    return max(cpu or [value for _, value in readings])


class ThermalGuard:
    """When to hold new work back: above ``max_temp`` °C, until the CPU is back at ``max_temp - hysteresis``.

    ``read_temperature`` returns °C or None (unreadable); `too_hot` reads it at most every ``poll_seconds`` (by
    ``clock``), and `wait_until_cool` sleeps that long between readings. The sources are injectable for tests.

    >>> guard = ThermalGuard(80)  # doctest: +SKIP
    >>> guard.wait_until_cool()  # doctest: +SKIP
    0.0
    """

    def __init__(
        self,
        max_temp: float,
        *,
        hysteresis: float = 3.0,
        poll_seconds: float = 5.0,
        read_temperature: Callable[[], float | None] = read_cpu_temperature,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if hysteresis < 0 or poll_seconds < 0:
            raise ValueError("hysteresis and poll_seconds must be >= 0")
        self.max_temp = float(max_temp)
        self.hysteresis = float(hysteresis)
        self.poll_seconds = float(poll_seconds)
        self._read_temperature = read_temperature
        self._sleep = sleep
        self._clock = clock
        self.temperature: float | None = None
        self.hot = False
        self._read_at: float | None = None
        self._warned = False

    @property
    def resume_temp(self) -> float:
        return self.max_temp - self.hysteresis

    def _read(self) -> None:
        self._read_at = self._clock()
        self.temperature = temperature = self._read_temperature()
        was_hot = self.hot
        if temperature is None:
            if not self._warned:
                logger.warning("cannot read the CPU temperature on this machine; --max-temp is ignored")
                self._warned = True
            self.hot = False  # an unknown temperature must not stall the run forever
        elif temperature > self.max_temp:
            self.hot = True
        elif temperature <= self.resume_temp:
            self.hot = False
        if temperature is not None and self.hot != was_hot:
            logger.info(
                "CPU at %.0f °C: %s",
                temperature,
                f"pausing until it is back at {self.resume_temp:g} °C" if self.hot else "resuming",
            )

    def too_hot(self) -> bool:
        """Whether new work should wait now; reads the sensor when the last reading is ``poll_seconds`` old."""
        if self._read_at is None or self._clock() - self._read_at >= self.poll_seconds:
            self._read()
        return self.hot

    def wait_until_cool(self, on_poll: Callable[[ThermalGuard], None] | None = None) -> float:
        """Block while `too_hot`, calling ``on_poll`` before each sleep; returns the seconds slept."""
        slept = 0.0
        self.too_hot()
        while self.hot:
            if on_poll is not None:
                on_poll(self)
            self._sleep(self.poll_seconds)
            slept += self.poll_seconds
            self._read()
        return slept
