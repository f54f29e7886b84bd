"""End-to-end benchmark: the real server as users run it, driven by wrk, with two references.

Prints requests/s, leads/s, p50, p99, errors and server CPU for 1-lead and 500-lead payloads at 1 and 32
connections; the HTTP ceiling (a trivial endpoint on the same server configuration) and the in-process
model limit (XGBoost inplace_predict, one core); and our figures as ratios of both. With --lake-modes it
also measures the lake's cost (sync, async, off). Results go to bench/results/latest.json.

    ./dev bench                 # about 3 minutes
    ./dev bench --lake-modes    # adds the lake sync/async/off comparison (about 5 minutes)
    ./dev bench --unknown-values   # adds leads of CRM-style and unknown values, in process (about 2 minutes)
    ./dev bench --explain-cases    # adds 1 and 500 leads with `explain` beside without, and the TreeSHAP kernel
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import xgboost as xgb

from leadscore.api.schemas import EXAMPLE_REQUEST
from leadscore.features.encode import encode
from leadscore.loadtest.data import synthetic_leads
from leadscore.model.bundle import BOOSTER_FILE, default_bundle_dir
from leadscore.training.synth import synthesize, table_to_columns

ROOT = Path(__file__).resolve().parent
WRK_SCRIPT = ROOT / "wrk_post.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def payloads(workdir: Path) -> dict[str, tuple[Path, int]]:
    """The benchmark bodies: the original example (1 lead) and 500 realistic synthetic leads."""
    one = workdir / "one.json"
    one.write_text(json.dumps({"leads": EXAMPLE_REQUEST["leads"]}))
    leads = synthetic_leads(500, seed=21, prefix="lead")
    five = workdir / "five-hundred.json"
    five.write_text(json.dumps({"leads": leads}))
    return {"1-lead": (one, 1), "500-lead": (five, 500)}


def _descendants(pid: int) -> list[int]:
    # Every thread's children: a worker starts its Parquet converter from the lake flusher thread, not the main one.
    kids = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids += [int(p) for p in children.read_text().split()]
        except FileNotFoundError:
            continue
    return kids + [d for k in kids for d in _descendants(k)]


def process_tree_cpu(pid: int) -> float:
    """CPU seconds used so far by `pid` and all its descendants (workers, their Parquet converters)."""
    total = 0.0
    for p in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


class Server:
    """`leadscore serve` with the given environment; stopped by its PID."""

    def __init__(self, workers: int, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        log = (workdir / f"server-{self.port}.log").open("wb")
        full_env = {**os.environ, "LEADSCORE_SPOOL_DIR": str(workdir / "spool"),
                    "LEADSCORE_LAKE_URI": str(workdir / "lake"), **env}  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, "-m", "leadscore", "serve", "--port", str(self.port), "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health/ready", timeout=1).status_code == 200:
                    time.sleep(1.0)  # every worker up
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become ready; see {workdir}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> list[float]:
        """Resident memory of each worker."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [
            int(line.split()[1]) / 1024
            for child in children
            for line in Path(f"/proc/{child}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        ]

    def lake_commits(self, seconds: float, workers: int) -> dict[str, float]:
        """Lake commits in the server's log so far: count, rows, and commits per worker per minute."""
        commits = rows = 0
        for line in (self.workdir / f"server-{self.port}.log").read_text(errors="replace").splitlines():
            if '"lake_committed"' in line:
                commits += 1
                rows += int(json.loads(line).get("rows", 0))
        return {
            "commits": commits,
            "rows": rows,
            "rows_per_commit": round(rows / commits) if commits else 0,
            "commits_per_worker_per_minute": round(commits / workers / (seconds / 60), 2),
        }

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wrk(url: str, path: str, body: Path | None, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run; returns its summary (parsed from the Lua `done` hook's JSON line)."""
    env = {**os.environ, "BODY": str(body) if body else ""}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url + path],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    return dict(json.loads(line))


def measure(server: Server, path: str, body: Path | None, leads: int, connections: int, seconds: int) -> dict[str, Any]:
    wrk(server.url, path, body, connections, 2)  # warm-up
    cpu0, t0 = process_tree_cpu(server.process.pid), time.monotonic()
    result = wrk(server.url, path, body, connections, seconds)
    cpu = (process_tree_cpu(server.process.pid) - cpu0) / (time.monotonic() - t0)
    rps = result["requests"] / result["seconds"]
    return {
        "connections": connections,
        "requests_per_s": round(rps, 1),
        "leads_per_s": round(rps * leads, 1),
        "p50_ms": round(result["p50_us"] / 1000, 2),
        "p99_ms": round(result["p99_us"] / 1000, 2),
        "errors": result["errors"],
        "server_cpu_cores": round(cpu, 2),
    }


def model_limit(repeats: int = 3) -> dict[str, float]:
    """XGBoost inplace_predict leads/s for batches of 1 and 500, one thread (one core)."""
    booster = xgb.Booster()
    booster.load_model(str(default_bundle_dir() / BOOSTER_FILE))
    booster.set_param({"nthread": 1})
    table = synthesize(500, seed=4)
    matrix = encode(table_to_columns(table), 500, datetime.now(UTC)).matrix
    out = {}
    for batch in (1, 500):
        x = np.ascontiguousarray(matrix[:batch])
        booster.inplace_predict(x)
        calls = 2000 if batch == 1 else 100
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                booster.inplace_predict(x)
            best = min(best, (time.perf_counter() - t0) / calls)
        out[f"batch_{batch}_leads_per_s_per_core"] = round(batch / best, 1)
        out[f"batch_{batch}_us_per_call"] = round(best * 1e6, 1)
    return out


def machine() -> dict[str, Any]:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "xgboost": xgb.__version__, "load_generator": "wrk, same machine, sharing the cores"}  # fmt: skip


def run_modes(
    args: argparse.Namespace, bodies: dict[str, tuple[Path, int]], workdir: Path, report: dict[str, Any]
) -> list[dict[str, Any]]:
    """wrk runs against a server per lake mode (sync only unless --lake-modes); adds RSS and commit figures."""
    modes = {"sync": {}, "async": {"LEADSCORE_LAKE_DURABILITY": "async"}, "off": {"LEADSCORE_LAKE_ENABLED": "false"}}
    runs: list[dict[str, Any]] = []
    for mode, env in modes.items() if args.lake_modes else [("sync", modes["sync"])]:
        server = Server(args.workers, {**env}, workdir / mode)
        started = time.monotonic()
        try:
            if mode == "sync":
                for connections in (1, 32):
                    row = measure(server, "/api/v1/health/live", None, 0, connections, args.seconds)
                    runs.append({"case": "http-ceiling", "lake": mode, **row})
                    print(f"{'http-ceiling':10} lake={mode:5} {row}")
            for case, (body, leads) in bodies.items():
                for connections in (1, 32):
                    row = measure(server, "/api/v1/scoring/score", body, leads, connections, args.seconds)
                    runs.append({"case": case, "lake": mode, **row})
                    print(f"{case:10} lake={mode:5} {row}")
            if mode == "sync":
                report["worker_rss_mb_after"] = server.rss_mb()
        finally:
            server.stop()
        if mode != "off":
            commits = server.lake_commits(time.monotonic() - started, args.workers)
            report.setdefault("lake_commits", {})[mode] = commits
            print(f"lake commits lake={mode:5} {commits}")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lake-modes", action="store_true", help="also compare lake sync/async/off")
    parser.add_argument(
        "--unknown-values", action="store_true", help="also score CRM-style and unknown values in process"
    )
    parser.add_argument("--explain-cases", action="store_true", help="also score with explain (bench/explain.py)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "latest.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk); ./dev bench installs it")

    workdir = Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    bodies = payloads(workdir)
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                              "workers": args.workers, "seconds_per_run": args.seconds}  # fmt: skip
    print(f"machine: {report['machine']}")
    report["model_limit"] = model_limit()
    print(f"model limit (XGBoost inplace_predict, one core): {report['model_limit']}")
    if args.unknown_values:
        import unknown_values  # noqa: PLC0415 - bench/ is the script's directory, so on its path

        report["unknown_values"] = unknown_values.figures()
        print(f"unknown values (in process, us per call and ratios to clean): {report['unknown_values']}")

    runs = run_modes(args, bodies, workdir, report)
    report["runs"] = runs
    if args.explain_cases:
        import explain  # noqa: PLC0415 - bench/explain.py, beside this script

        report["explain"] = explain.server_cases(
            Server(args.workers, {}, workdir / "explain"), measure, bodies, args.seconds
        )

    ceiling = next(r for r in runs if r["case"] == "http-ceiling" and r["connections"] == 32)["requests_per_s"]
    limit = report["model_limit"]
    ratios = {}
    for r in runs:
        if r["lake"] != "sync" or r["case"] == "http-ceiling" or r["connections"] != 32:
            continue
        key = "batch_1_leads_per_s_per_core" if r["case"] == "1-lead" else "batch_500_leads_per_s_per_core"
        ratios[r["case"]] = {
            "of_http_ceiling_rps": round(r["requests_per_s"] / ceiling, 3),
            "of_model_limit_leads_per_core": round(r["leads_per_s"] / limit[key], 3),
            "of_model_limit_leads_all_cores": round(r["leads_per_s"] / (limit[key] * (os.cpu_count() or 1)), 3),
        }
    report["ratios"] = ratios
    print(f"ratios at 32 connections: {json.dumps(ratios)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
