"""What Linux says about a process and the machine: peak memory, CPU time, CPU model.

Read from /proc rather than sampled, so a short spike between two samples is never
missed: VmHWM is the kernel's own high-water mark of resident memory.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a live process, in MiB; None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far; None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: count fields after its closing ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far (/proc/stat): for processes that
    come and go, such as the server's backends of short sessions, whose own counters
    cannot be read after they end."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
    return (user + nice + system + irq + softirq) / _TICKS


def oldest_named(command: str) -> int | None:
    """The longest-running process whose executable name is `command`: the broker's
    beam.smp, not the short-lived one that each rabbitmqctl runs beside it (counted, it
    made a restart appear where there was none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    stat = (entry / "stat").read_text()
                    started = int(stat[stat.rindex(")") + 2 :].split()[19])
                    found.append((started, int(entry.name)))
            except (OSError, ValueError):
                continue
    return min(found)[1] if found else None


def machine() -> dict[str, object]:
    """The machine a result was measured on, so figures are never compared blind."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": os.uname().release,
    }


def load_average() -> float:
    """1-minute load: other work on a shared machine shows here and skews timings."""
    return round(os.getloadavg()[0], 2)
