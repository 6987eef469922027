"""The thermal guard with fake sensors, sleeps and clocks; the sensor reader on a fake /sys/class/thermal."""

from __future__ import annotations

import logging

import pytest

from faceval.sources import thermal
from faceval.sources.thermal import ThermalGuard, read_cpu_temperature


class FakeSensor:
    """Returns the given readings in turn (the last one forever) and counts the reads."""

    def __init__(self, *readings: float | None) -> None:
        self.readings = list(readings)
        self.reads = 0

    def __call__(self) -> float | None:
        self.reads += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def guard_with(sensor: FakeSensor, **options) -> tuple[ThermalGuard, list[float]]:
    sleeps: list[float] = []
    options.setdefault("poll_seconds", 0.0)
    return ThermalGuard(80, read_temperature=sensor, sleep=sleeps.append, **options), sleeps


def test_pauses_above_the_limit_and_resumes_below_the_hysteresis_band():
    sensor = FakeSensor(70, 80, 80.5, 79, 77.5, 77, 79.9, 80.1)
    guard, _ = guard_with(sensor, hysteresis=3)
    states = [guard.too_hot() for _ in range(8)]
    # 80 is not above 80; once above, 79 and 77.5 are still too hot; 77 = 80 - 3 resumes; 79.9 stays cool.
    assert states == [False, False, True, True, True, False, False, True]


def test_wait_until_cool_sleeps_between_readings_and_reports_each_poll():
    sensor = FakeSensor(85, 84, 79, 76)
    guard, sleeps = guard_with(sensor, hysteresis=3, poll_seconds=2.5)
    seen = []
    slept = guard.wait_until_cool(lambda g: seen.append(g.temperature))
    assert seen == [85, 84, 79] and sleeps == [2.5, 2.5, 2.5] and slept == 7.5
    assert sensor.reads == 4 and not guard.hot


def test_wait_until_cool_returns_at_once_when_cool():
    guard, sleeps = guard_with(FakeSensor(60))
    assert guard.wait_until_cool() == 0.0 and sleeps == []


def test_the_sensor_is_read_at_most_every_poll_seconds():
    now = [0.0]
    sensor = FakeSensor(90, 60)
    guard, _ = guard_with(sensor, poll_seconds=5, clock=lambda: now[0])
    assert guard.too_hot() and sensor.reads == 1
    now[0] = 4.9
    assert guard.too_hot() and sensor.reads == 1
    now[0] = 5.0
    assert not guard.too_hot() and sensor.reads == 2


def test_an_unreadable_temperature_warns_once_and_never_pauses(caplog):
    sensor = FakeSensor(None)
    guard, sleeps = guard_with(sensor)
    with caplog.at_level(logging.WARNING, logger="faceval.sources.thermal"):
        assert [guard.too_hot() for _ in range(5)] == [False] * 5
        assert guard.wait_until_cool() == 0.0
    assert sleeps == [] and sensor.reads == 6
    assert [record.getMessage() for record in caplog.records] == [
        "cannot read the CPU temperature on this machine; --max-temp is ignored"
    ]


def test_a_sensor_that_fails_while_hot_lets_the_run_go_on(caplog):
    guard, sleeps = guard_with(FakeSensor(90, None))
    with caplog.at_level(logging.WARNING, logger="faceval.sources.thermal"):
        assert guard.wait_until_cool() == 0.0
    assert len(sleeps) == 1 and len(caplog.records) == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        ThermalGuard(80, hysteresis=-1)


def write_zone(root, index: int, kind: str, millidegrees: str) -> None:
    zone = root / f"thermal_zone{index}"
    zone.mkdir()
    (zone / "type").write_text(kind + "\n")
    (zone / "temp").write_text(millidegrees + "\n")


def test_reads_the_hottest_cpu_zone_and_ignores_other_and_broken_zones(tmp_path):
    write_zone(tmp_path, 0, "acpitz", "95000")  # hotter, but not the CPU
    write_zone(tmp_path, 1, "x86_pkg_temp", "61500")
    write_zone(tmp_path, 2, "cpu-thermal", "64000")
    write_zone(tmp_path, 3, "cpu-disabled", "")
    assert read_cpu_temperature(tmp_path) == 64.0


def test_without_a_cpu_zone_the_hottest_zone_counts(tmp_path):
    write_zone(tmp_path, 0, "acpitz", "45000")
    write_zone(tmp_path, 1, "iwlwifi_1", "52000")
    assert read_cpu_temperature(tmp_path) == 52.0


def test_falls_back_to_psutil_then_to_none(tmp_path, monkeypatch):
    class Entry:
        def __init__(self, label: str, current: float | None) -> None:
            self.label, self.current = label, current

    sensors = {"nvme": [Entry("Composite", 70.0)], "k10temp": [Entry("Tctl", 58.25), Entry("Tccd1", None)]}
    monkeypatch.setattr(thermal.psutil, "sensors_temperatures", lambda: sensors, raising=False)
    assert read_cpu_temperature(tmp_path / "no-such-dir") == 58.25
    monkeypatch.setattr(thermal.psutil, "sensors_temperatures", dict, raising=False)
    assert read_cpu_temperature(tmp_path / "no-such-dir") is None
