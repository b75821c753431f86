"""HTTP path benchmark on PostgreSQL, every figure beside baselines measured in the same run.

    python bench/e2e/run.py [--create-seconds 10] [--payments 1000] [--payments-seconds 30] [--concurrency 16]
    python bench/e2e/run.py --trades 200 --payments 50 --pgbench-seconds 3 --processes 0     # a quick run
    python bench/e2e/run.py --profile /tmp/prof                                 # + cProfile of the platform

Processes (each its own): PostgreSQL; the platform (`piaohao serve`); the sandbox channel
simulator (`piaohao sandbox serve`, its own PostgreSQL database); the merchant's notification
receiver (bench/e2e/receiver.py); the bare baseline server (bench/e2e/bare_app.py); this script,
the load generator (bench/e2e/loadgen.py, raw asyncio HTTP/1.1 keep-alive).

Phases, in order:
  0. `pgbench -c 8` TPC-B on a scratch database: TPS.
  1. bare baseline: the create-trade requests against one INSERT per request on the same server
     stack (bare_app.py); req/s, p50/p99.
  2. create-trade on `piaohao serve` (one process: API and workers): req/s, p50/p99, and the
     platform's CPU ms per request.
  3. end-to-end payments on the same server (--payments, or as many as are started in
     --payments-seconds): create → cashier /pay → the sandbox's buyer page
     /succeed → the sandbox notifies the platform → trade succeeded, ledger posted → the merchant
     notification acknowledged by the receiver. Payments/s, and the platform's CPU ms per payment
     (user + system CPU of the `piaohao serve` process tree over the phase, from /proc: the
     sandbox, the receiver, PostgreSQL and the load generator are other processes, not counted).
  4. create-trade on 2 API processes (`piaohao serve --processes 2 --no-workers`) plus one
     `piaohao worker` process, against phase 2.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
import procs  # noqa: E402
import profile_report  # noqa: E402

BENCH_SECRET_KEY = "bench-e2e-secret-key-0123456789abcdef"  # seals channel keys at rest; scratch data only
E2E_TIMEOUT_S = 600
IDLE_S = 3.0  # how long the idle platform's CPU (its workers polling) is read


def idle_cpu_ms_per_s(roots: list[int], seconds: float) -> float:
    before = procs.tree_cpu_s(roots)
    time.sleep(seconds)
    return (procs.tree_cpu_s(roots) - before) * 1000 / seconds


def sign(secret: str, method: str, path: str, ts: str, nonce: str, body: bytes) -> str:
    canonical = b"\n".join([method.encode(), path.encode(), ts.encode(), nonce.encode(), body])
    return base64.b64encode(hmac.new(secret.encode(), canonical, hashlib.sha256).digest()).decode()


def create_request(creds: dict, out_trade_no: str, amount: int, notify_url: str) -> bytes:
    body = json.dumps({"out_trade_no": out_trade_no, "amount": amount, "currency": "CNY", "subject": "bench",
                       "notify_url": notify_url, "order_timeout_s": 3600}).encode()
    ts, nonce = str(int(time.time())), secrets.token_hex(12)
    headers = {"X-App-Id": creds["app_id"], "X-Timestamp": ts, "X-Nonce": nonce,
               "X-Signature": sign(creds["app_secret"], "POST", "/v1/trades", ts, nonce, body),
               "Content-Type": "application/json"}
    return loadgen.raw_request("POST", "/v1/trades", headers, body)


def create_requests(creds: dict, notify_url: str) -> Iterator[bytes]:
    """Signed as they are sent (about 20 µs each): the timestamp stays fresh in a long phase."""
    prefix = "B" + secrets.token_hex(4)
    for i in count():
        yield create_request(creds, f"{prefix}{i}", 100 + i % 900, notify_url)


class Cpu:
    """CPU seconds of process trees between two readings; "client" is this process alone (the
    servers are its children)."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = {**groups, "client": []}
        self.start = self.end = {}
        self.counted = ""  # the platform's processes, as counted at the window's start
        self.members: list[int] = []
        self.by_pid: dict[int, float] = {}

    def mark(self, edge: str) -> None:
        reading = {name: procs.tree_cpu_s(pids) for name, pids in self.groups.items() if name != "client"}
        reading["client"] = loadgen.cpu_self_s()
        reading["machine busy"], reading["machine total"] = procs.machine_busy_s()
        if edge == "start":
            self.start = reading
            self.members = procs.tree(self.groups[next(iter(self.groups))])
            self.counted = procs.describe(self.members)
            self.by_pid = procs.cpu_by_pid(self.members)
        else:
            self.end = reading
            self.by_pid = {pid: cpu_s - self.by_pid.get(pid, 0.0)
                           for pid, cpu_s in procs.cpu_by_pid(self.members).items()}

    def used_s(self, name: str) -> float:
        return self.end[name] - self.start[name]

    def machine_busy(self) -> float:
        """Share of all the machine's cores busy in the window (anyone's processes)."""
        return self.used_s("machine busy") / max(self.used_s("machine total"), 1e-9)


class Profiler:
    """Snapshots of a server run under bench/e2e/profiled.py, one per phase edge (SIGUSR1)."""

    def __init__(self, out_dir: str | None, pid: int | None = None):
        self.out_dir, self.pid, self.taken = out_dir, pid, 0

    def snapshot(self) -> str | None:
        if not self.out_dir or self.pid is None:
            return None
        self.taken += 1
        path = os.path.join(self.out_dir, f"snapshot-{self.taken}.prof")
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        return path


def create_phase(url: str, creds: dict, notify_url: str, args, cpu: Cpu, profiler: Profiler | None = None) -> dict:
    snaps: list[str | None] = []

    def on_window(edge: str) -> None:
        cpu.mark(edge)
        if profiler:
            snaps.append(profiler.snapshot())

    result = loadgen.run(loadgen.timed_phase(
        url, create_requests(creds, notify_url), concurrency=args.concurrency, warmup_s=args.warmup_seconds,
        seconds=args.create_seconds, max_requests=args.trades, expect_status=201, on_window=on_window))
    result["cpu"] = {name: cpu.used_s(name) for name in cpu.groups}
    result["snapshots"] = snaps
    result["counted"] = cpu.counted
    result["machine_busy"] = cpu.machine_busy()
    result["by_pid"] = cpu.by_pid
    return result


async def e2e_phase(base: str, creds: dict, n: int, max_s: float, concurrency: int, notify_url: str,
                    receiver_url: str, cpu: Cpu, profiler: Profiler) -> dict:
    """`concurrency` buyers, each paying one trade after another, until `n` payments were made (or
    `max_s` passed: no payment is started after it) and their notifications acknowledged."""
    platform = urlsplit(base)
    receiver = loadgen.Conn(urlsplit(receiver_url).hostname, urlsplit(receiver_url).port)
    count_request = loadgen.raw_request("GET", receiver_url)

    async def receiver_state() -> dict:
        status, body = await receiver.request(count_request)
        return json.loads(body)

    before = (await receiver_state())["count"]
    prefix = "E" + secrets.token_hex(4)
    todo = iter(range(n))
    made = [0]
    json_headers = {"Content-Type": "application/json"}

    async def buyer() -> None:
        api = loadgen.Conn(platform.hostname, platform.port)
        channel: loadgen.Conn | None = None
        try:
            for i in todo:
                if time.monotonic() > stop_at:
                    break
                made[0] += 1
                status, body = await api.request(create_request(creds, f"{prefix}{i}", 100 + i % 900, notify_url))
                assert status == 201, (status, body[:300])
                pay_url = json.loads(body)["pay_url"]
                status, body = await api.request(
                    loadgen.raw_request("POST", pay_url + "/pay", json_headers, b'{"method": "sandbox"}'))
                assert status == 200, ("POST {pay_url}/pay", status, body[:300])
                redirect = urlsplit(json.loads(body)["redirect_url"])
                channel = channel or loadgen.Conn(redirect.hostname, redirect.port)
                status, body = await channel.request(
                    loadgen.raw_request("POST", redirect.path + "/succeed", json_headers, b"{}"))
                assert status < 300, ("POST {redirect_url}/succeed", status, body[:300])
        finally:
            api.close()
            if channel:
                channel.close()

    profiler.snapshot()
    cpu.mark("start")
    started, stop_at = time.time(), time.monotonic() + max_s
    await asyncio.gather(*(buyer() for _ in range(concurrency)))
    buyers_done = time.time()
    deadline = time.monotonic() + E2E_TIMEOUT_S
    while (state := await receiver_state())["count"] - before < made[0] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu.mark("end")
    snapshot = profiler.snapshot()
    receiver.close()
    paid = state["count"] - before
    elapsed = max(state["last_at"], buyers_done) - started
    return {"payments": paid, "expected": made[0], "seconds": elapsed, "per_s": paid / elapsed,
            "buyers_s": buyers_done - started, "cpu": {name: cpu.used_s(name) for name in cpu.groups},
            "snapshot": snapshot, "counted": cpu.counted, "machine_busy": cpu.machine_busy()}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--create-seconds", type=float, default=10.0, help="each create phase's measured window")
    ap.add_argument("--warmup-seconds", type=float, default=2.0, help="unmeasured load before each create window")
    ap.add_argument("--trades", type=int, default=None,
                    help="end each create window after this many requests instead (a quick run)")
    ap.add_argument("--payments", type=int, default=1000)
    ap.add_argument("--payments-seconds", type=float, default=30.0,
                    help="start no payment after this long (the phase then waits for their notifications)")
    ap.add_argument("--concurrency", type=int, default=16, help="connections (create) and buyers (payments)")
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--processes", type=int, default=2, help="API processes of the scaling phase; 0 skips it")
    ap.add_argument("--profile", metavar="DIR", default=None,
                    help="run the one-process server under cProfile (every thread, CPU clocks) and write the "
                         "create and payment phases' profiles to DIR (the figures are then the profiled ones)")
    return ap.parse_args()


def command_line(args: argparse.Namespace) -> str:
    parts = ["python", "bench/e2e/run.py", "--create-seconds", f"{args.create_seconds:g}",
             "--warmup-seconds", f"{args.warmup_seconds:g}", "--payments", str(args.payments),
             "--payments-seconds", f"{args.payments_seconds:g}", "--concurrency", str(args.concurrency),
             "--pgbench-seconds", str(args.pgbench_seconds), "--processes", str(args.processes)]
    if args.trades is not None:
        parts += ["--trades", str(args.trades)]
    if args.pg != "postgresql://postgres@127.0.0.1:5432":
        parts += ["--pg", args.pg]
    if args.profile:
        parts += ["--profile", args.profile]
    return shlex.join(parts)


def main() -> int:
    args = parse_args()
    exe = shutil.which("piaohao") or os.path.join(os.path.dirname(sys.executable), "piaohao")
    pg, sqla = args.pg, args.pg.replace("postgresql://", "postgresql+psycopg://")
    print(f"command: {command_line(args)}", flush=True)
    load = open("/proc/loadavg").read().strip()
    load_start = float(load.split()[0])
    print(f"load average at start: {load}", flush=True)
    run_started = time.monotonic()

    tps = procs.pgbench_tps(pg, args.pgbench_seconds)
    db = "piaohao_bench_" + secrets.token_hex(4)
    sandbox_db = db + "_sandbox"
    procs.psql(pg, f"CREATE DATABASE {db}")
    procs.psql(pg, f"CREATE DATABASE {sandbox_db}")
    work = tempfile.mkdtemp(prefix="piaohao-bench-")
    port, sport, rport, bport = (procs.free_port() for _ in range(4))
    base, sandbox_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sport}"
    notify_url = f"http://127.0.0.1:{rport}/notify"
    env = dict(os.environ, PIAOHAO_DATABASE_URL=f"{sqla}/{db}", PIAOHAO_BASE_URL=base, PIAOHAO_LOG_LEVEL="WARNING",
               PIAOHAO_RATE_LIMIT_PER_S="0",  # one merchant sends everything; the limiter would measure itself
               PIAOHAO_SECRET_KEY=BENCH_SECRET_KEY,
               PIAOHAO_OUTBOUND_PRIVATE="allow",  # the receiver and the sandbox listen on loopback
               PIAOHAO_SANDBOX="on", PIAOHAO_SANDBOX_URL=sandbox_url)  # off by default outside the embedded default
    running = []
    results: dict = {}
    try:
        subprocess.run([exe, "db", "upgrade"], env=env, cwd=work, check=True, capture_output=True)
        creds = json.loads(subprocess.run([exe, "merchants", "create", "--name", "Bench", "--json"], env=env,
                                                cwd=work, check=True, capture_output=True, text=True).stdout)
        sandbox = procs.start([exe, "sandbox", "serve", "--port", str(sport), "--database-url", f"{sqla}/{sandbox_db}"],
                              env=env, cwd=work, log=f"{work}/sandbox.log", health_url=f"{sandbox_url}/health")
        receiver = procs.start([sys.executable, os.path.join(HERE, "receiver.py"), str(rport)], env=env, cwd=work,
                               log=f"{work}/receiver.log", health_url=f"http://127.0.0.1:{rport}/count")
        running += [sandbox, receiver]
        others = {"sandbox": [sandbox.pid], "receiver": [receiver.pid]}

        bare = procs.start([sys.executable, os.path.join(HERE, "bare_app.py"), "--port", str(bport),
                            "--database-url", f"{sqla}/{db}"], env=env, cwd=work, log=f"{work}/bare.log",
                           health_url=f"http://127.0.0.1:{bport}/healthz")
        try:
            results["bare"] = create_phase(f"http://127.0.0.1:{bport}", creds, notify_url, args,
                                           Cpu({"server": [bare.pid], **others}))
        finally:
            procs.stop([bare])

        serve_cmd = [exe, "serve", "--port", str(port)]
        if args.profile:
            serve_cmd = [sys.executable, os.path.join(HERE, "profiled.py"), args.profile, *serve_cmd[1:]]
        serve = procs.start(serve_cmd, env=env, cwd=work, log=f"{work}/serve-1.log", health_url=f"{base}/healthz")
        try:
            profiler = Profiler(args.profile, serve.pid)
            cpu = Cpu({"platform": [serve.pid], **others})
            results["idle_ms_per_s"] = idle_cpu_ms_per_s([serve.pid], IDLE_S)
            results["create1"] = create_phase(base, creds, notify_url, args, cpu, profiler)
            results["e2e"] = loadgen.run(e2e_phase(
                base, creds, args.payments, args.payments_seconds, args.concurrency, notify_url,
                f"http://127.0.0.1:{rport}/count", cpu, profiler))
        finally:
            procs.stop([serve])

        if args.processes > 0:
            # the worker first: it has imported and settled by the time the API processes have
            worker = subprocess.Popen([exe, "worker"], env=env, cwd=work, stdout=open(f"{work}/worker.log", "w"),
                                      stderr=subprocess.STDOUT)
            try:
                serve = procs.start([exe, "serve", "--port", str(port), "--processes", str(args.processes),
                                     "--no-workers"], env=env, cwd=work, log=f"{work}/serve-n.log",
                                    health_url=f"{base}/healthz")
            except BaseException:
                procs.stop([worker])
                raise
            try:
                procs.settle([serve.pid, worker.pid], args.processes, quiet_cpu_s_per_s=0.15)
                results["createN"] = create_phase(base, creds, notify_url, args,
                                                  Cpu({"platform": [serve.pid, worker.pid], **others}))
            finally:
                procs.stop([serve, worker])
    finally:
        procs.stop(running)
        procs.psql(pg, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        procs.psql(pg, f"DROP DATABASE IF EXISTS {sandbox_db} WITH (FORCE)")
    shutil.rmtree(work, ignore_errors=True)  # the servers' logs: kept only when a phase failed
    report(args, tps, results, time.monotonic() - run_started, load_start)
    return 0 if results["e2e"]["payments"] == results["e2e"]["expected"] else 1


def report(args: argparse.Namespace, tps: float, r: dict, run_s: float, load_start: float) -> None:
    bare, c1, e2e = r["bare"], r["create1"], r["e2e"]

    def create_line(label: str, c: dict, server: str) -> str:
        per_request_ms = 1000 / c["requests"]
        return (f"{label}: {c['rps']:.0f} req/s (p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms; "
                f"{c['requests']} requests in {c['seconds']:.1f} s; server CPU {c['cpu'][server] * per_request_ms:.2f}"
                f" ms/request, load generator {c['client_cpu_s'] * per_request_ms:.2f} ms/request; machine "
                f"{c['machine_busy'] * 100:.0f} % busy)")

    print(f"load average at end: {open('/proc/loadavg').read().strip()}  (run took {run_s:.0f} s)")
    print(f"baseline pgbench -c 8 TPC-B: {tps:.0f} TPS")
    print(create_line(f"baseline bare one-INSERT endpoint ({args.concurrency} connections)", bare, "server"))
    print(create_line("create-trade, 1 process", c1, "platform"))
    bare_cpu_ms = bare["cpu"]["server"] * 1000 / bare["requests"]  # the same-run yardstick for CPU figures
    print(f"  CPU per request = {c1['cpu']['platform'] * 1000 / c1['requests'] / bare_cpu_ms:.1f} x the bare "
          f"endpoint's (CPU milliseconds vary with the machine from run to run; this ratio much less)")
    print(f"  = {c1['rps'] / tps:.2f} x pgbench (target >= 0.55 x), {c1['rps'] / bare['rps']:.2f} x bare endpoint "
          f"(target >= 0.8 x), p99 {c1['p99_ms']:.0f} ms (target <= 50 ms)")
    paid = max(e2e["payments"], 1)
    print(f"end-to-end payments: {e2e['per_s']:.1f}/s ({e2e['payments']}/{e2e['expected']} in {e2e['seconds']:.1f} s, "
          f"{args.concurrency} buyers; machine {e2e['machine_busy'] * 100:.0f} % busy) = {e2e['per_s'] / tps:.3f} x "
          f"pgbench (target >= 0.2 x)")
    idle_ms = r["idle_ms_per_s"] * e2e["seconds"] / paid
    print(f"platform CPU per end-to-end payment: {e2e['cpu']['platform'] * 1000 / paid:.1f} ms (target <= 5 ms), "
          f"of which {idle_ms:.1f} ms the idle cost of its workers' polling ({r['idle_ms_per_s']:.0f} ms CPU per "
          f"second idle, read for {IDLE_S:g} s before the create phase); "
          f"= {e2e['cpu']['platform'] * 1000 / paid / bare_cpu_ms:.0f} x the bare endpoint's CPU per request")
    print(f"  counted: user + system CPU over the phase of the `piaohao serve` process tree (API, cashier, workers): "
          f"{e2e['counted']}")
    print(f"  not counted (own processes): sandbox channel {e2e['cpu']['sandbox'] * 1000 / paid:.1f} ms, receiver "
          f"{e2e['cpu']['receiver'] * 1000 / paid:.1f} ms, load generator {e2e['cpu']['client'] * 1000 / paid:.1f} ms "
          f"per payment; PostgreSQL (shared with other sessions, not read)")
    if "createN" in r:
        cn = r["createN"]
        print(create_line(f"create-trade, {args.processes} API processes + 1 worker process", cn, "platform"))
        print(f"  = {cn['rps'] / c1['rps']:.2f} x 1 process (target >= 1.5 x), {cn['rps'] / tps:.2f} x pgbench, "
              f"{cn['rps'] / bare['rps']:.2f} x bare endpoint")
        by_pid = ", ".join(f"{pid} {cpu_s:.1f} s" for pid, cpu_s in cn["by_pid"].items())
        print(f"  CPU counted: {cn['counted']}; CPU seconds in the window by process: {by_pid}")
        api = sorted(cn["by_pid"].values())[-args.processes:]
        if min(api) < 0.1 * sum(api):
            print(f"  WARNING: one API process did almost none of the work (the keep-alive connections all landed "
                  f"on the other): this window measures fewer than {args.processes} processes")
    summary = {"load_avg_1m": [load_start, float(open("/proc/loadavg").read().split()[0])], "pgbench_tps": round(tps),
               "bare_rps": round(bare["rps"]), "create_rps": round(c1["rps"]),
               "create_p50_ms": round(c1["p50_ms"], 1), "create_p99_ms": round(c1["p99_ms"], 1),
               "create_x_pgbench": round(c1["rps"] / tps, 3), "create_x_bare": round(c1["rps"] / bare["rps"], 3),
               "create_cpu_ms": round(c1["cpu"]["platform"] * 1000 / c1["requests"], 2),
               "bare_cpu_ms": round(bare["cpu"]["server"] * 1000 / bare["requests"], 2),
               "payments_per_s": round(e2e["per_s"], 2), "payments_x_pgbench": round(e2e["per_s"] / tps, 4),
               "payment_cpu_ms": round(e2e["cpu"]["platform"] * 1000 / paid, 1), "idle_cpu_ms": round(idle_ms, 1),
               "create_cpu_x_bare": round(c1["cpu"]["platform"] * 1000 / c1["requests"] / bare_cpu_ms, 2),
               "payment_cpu_x_bare": round(e2e["cpu"]["platform"] * 1000 / paid / bare_cpu_ms, 1),
               "sandbox_cpu_ms": round(e2e["cpu"]["sandbox"] * 1000 / paid, 1),
               "busy_pct": {"bare": round(bare["machine_busy"] * 100), "create": round(c1["machine_busy"] * 100),
                            "e2e": round(e2e["machine_busy"] * 100)}}
    if "createN" in r:
        summary |= {"createN_rps": round(r["createN"]["rps"]), "createN_x_1": round(r["createN"]["rps"] / c1["rps"], 3)}
        summary["busy_pct"]["createN"] = round(r["createN"]["machine_busy"] * 100)
    print("summary: " + json.dumps(summary))
    if args.profile:
        out = profile_report.write(args.profile, c1, e2e)
        print(f"profiles (CPU time per thread, cProfile): {out}")


if __name__ == "__main__":
    sys.exit(main())
