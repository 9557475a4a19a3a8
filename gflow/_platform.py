"""What this process runs on, read once where it is needed (no global state): the CPU's /proc/cpuinfo fields."""

from __future__ import annotations


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where it cannot be read: not Linux, a container without it)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor only
                key, _, value = line.partition(":")
                out[key.strip()] = value.strip()
    except OSError:
        pass
    return out
