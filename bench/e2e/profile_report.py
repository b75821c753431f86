"""The profile of one phase: the difference of two snapshots written by profiled.py, as the top
functions by own CPU time and by cumulative CPU time, in ms per request (or payment)."""

from __future__ import annotations

import marshal
import os

TOP = 30


def _load(path: str) -> dict:
    with open(path, "rb") as f:
        return marshal.load(f)


def _profiler_own(func: tuple) -> bool:
    """The snapshots' own work (taken inside the profiled process at the phase edges)."""
    path, _line, name = func
    return path.endswith(("profiled.py", "cProfile.py")) or "_lsprof" in name


def _diff(before: dict, after: dict) -> dict:
    out = {}
    for func, (_cc, nc, tt, ct, _callers) in after.items():
        if _profiler_own(func):
            continue
        _cc0, nc0, tt0, ct0, _ = before.get(func, (0, 0, 0.0, 0.0, {}))
        if nc - nc0 > 0:
            out[func] = (nc - nc0, tt - tt0, ct - ct0)
    return out


def _name(func: tuple) -> str:
    path, line, name = func
    if path == "~":
        return name
    parts = path.split(os.sep)
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor):]
            break
    return f"{'/'.join(parts[-3:])}:{line}({name})"


PACKAGES = ("sqlalchemy", "psycopg", "uvicorn", "starlette", "fastapi", "anyio", "pydantic", "httpx", "httpcore",
            "structlog", "orjson", "cryptography", "h11", "asyncio", "piaohao")


def package(func: tuple) -> str:
    """Which library a function's own time belongs to; C builtins count as "builtins"."""
    path = func[0]
    if path == "~":
        return "builtins (C functions, called from all of the above)"
    parts = path.split(os.sep)
    for name in PACKAGES:
        if name in parts:
            return name
    return "stdlib" if "python3" in path and "site-packages" not in path else "other"


def by_package(stats: dict, ops: int, total_s: float) -> list[str]:
    sums: dict[str, float] = {}
    for func, (_nc, tt, _ct) in stats.items():
        sums[package(func)] = sums.get(package(func), 0.0) + tt
    return [f"{tt * 1000 / ops:9.3f} ms/op {tt * 100 / total_s:5.1f}%  {name}"
            for name, tt in sorted(sums.items(), key=lambda kv: -kv[1])]


def phase(before_path: str, after_path: str, ops: int, label: str) -> str:
    stats = _diff(_load(before_path), _load(after_path))
    total_s = sum(tt for _, tt, _ in stats.values())
    lines = [f"== {label}: {ops} operations, profiled CPU {total_s * 1000 / ops:.2f} ms per operation "
             f"(cProfile's own overhead included, so several times the unprofiled CPU: read the shares). "
             f"Calls of coroutines and generators count every resumption."]
    lines.append("-- own time by package")
    lines += by_package(stats, ops, total_s)
    ours = {func: v for func, v in stats.items() if f"{os.sep}piaohao{os.sep}" in func[0]}
    for table, key, title in ((stats, 1, "own time (tottime)"), (stats, 2, "cumulative time (cumtime)"),
                              (ours, 2, "cumulative time, piaohao's own functions")):
        lines.append(f"-- top {TOP} by {title}: calls/op  own ms/op  cum ms/op  own %  function")
        for func, (nc, tt, ct) in sorted(table.items(), key=lambda kv: -kv[1][key])[:TOP]:
            lines.append(f"{nc / ops:9.1f} {tt * 1000 / ops:9.3f} {ct * 1000 / ops:9.3f} {tt * 100 / total_s:6.1f}%  "
                         f"{_name(func)}")
    return "\n".join(lines)


def write(out_dir: str, create: dict, e2e: dict) -> str:
    sections = []
    snaps = create.get("snapshots") or []
    if len(snaps) == 2 and all(snaps):
        sections.append(phase(snaps[0], snaps[1], create["requests"], "create-trade"))
    start = os.path.join(out_dir, "snapshot-3.prof")
    if e2e.get("snapshot") and os.path.exists(start):
        sections.append(phase(start, e2e["snapshot"], max(e2e["payments"], 1), "end-to-end payment"))
    path = os.path.join(out_dir, "report.txt")
    with open(path, "w") as f:
        f.write("\n\n".join(sections) + "\n")
    return path
