"""Processes of the benchmark: ports, PostgreSQL scratch databases, pgbench, starting servers and
waiting for them, and the CPU time of a process tree read from /proc."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time

import httpx

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 180  # importing piaohao takes seconds; many more on a machine at load 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(pg: str, sql: str, db: str = "postgres") -> str:
    return subprocess.run(["psql", f"{pg}/{db}", "-qAt", "-c", sql], check=True, capture_output=True,
                          text=True).stdout


def pgbench_tps(pg: str, seconds: int) -> float:
    db = "piaohao_pgbench_" + secrets.token_hex(4)
    psql(pg, f"CREATE DATABASE {db}")
    try:
        subprocess.run(["pgbench", "-i", "-s", "8", "-q", f"{pg}/{db}"], check=True, capture_output=True)
        out = subprocess.run(["pgbench", "-c", "8", "-j", "2", "-T", str(seconds), f"{pg}/{db}"], check=True,
                             capture_output=True, text=True).stdout
        return float(re.search(r"tps = ([0-9.]+)", out).group(1))
    finally:
        psql(pg, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _proc_table() -> tuple[dict[int, int], dict[int, float]]:
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        # utime + stime + cutime + cstime: children that exited and were reaped still count
        cpu[int(entry)] = sum(int(x) for x in fields[11:15]) / TICKS_PER_S
    return parent, cpu


def tree(roots: list[int]) -> list[int]:
    parent, _ = _proc_table()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [child for child, ppid in parent.items() if ppid == pid]
    return out


def describe(pids: list[int]) -> str:
    """`pid (program args...)` of each process, shortened: what a CPU figure counts."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        args = [os.path.basename(a) if a.startswith("/") else a for a in argv]
        if args and args[0].startswith("python"):
            args = args[1:]
        if "-c" in args[:-1]:  # multiprocessing's children: uvicorn's API processes, its resource tracker
            code = args[args.index("-c") + 1]
            args = ["API process (spawned)" if "spawn_main" in code
                    else "resource tracker" if "resource_tracker" in code else code[:40]]
        out.append(f"{pid} ({' '.join(args)[:70]})")
    return ", ".join(out)


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user time
    return (total - idle) / TICKS_PER_S, total / TICKS_PER_S


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    _, cpu = _proc_table()
    return {pid: cpu[pid] for pid in pids if pid in cpu}


def tree_cpu_s(roots: list[int]) -> float:
    """CPU seconds (user + system) used so far by processes `roots` and every live descendant:
    their own cost, whatever the load of the machine does to their wall time."""
    parent, cpu = _proc_table()
    total, todo = 0.0, list(roots)
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, ppid in parent.items() if ppid == pid]
    return total


def up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def start(cmd: list[str], *, env: dict, cwd: str, log: str, health_url: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not up(health_url):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop([proc])
            raise RuntimeError(f"{cmd[:3]} did not start; its log ({log}):\n" + open(log).read()[-3000:])
        time.sleep(0.2)
    return proc


def settle(roots: list[int], children: int, *, quiet_cpu_s_per_s: float = 0.1) -> None:
    """Wait until the tree has `children` child processes (uvicorn's with --processes) and they
    have finished starting: /healthz answers as soon as the first child is up, while the other
    may still be importing. Quiet = the tree used under `quiet_cpu_s_per_s` of CPU for a second."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = tree_cpu_s(roots)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_cpu_s(roots)
        if len(tree(roots)) - len(roots) >= children and now - last < quiet_cpu_s_per_s:
            return
        last = now
    raise RuntimeError(f"processes {roots} did not settle in {START_TIMEOUT_S} s")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
