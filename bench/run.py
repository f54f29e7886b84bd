"""End-to-end benchmark: the real server as users run it, driven by wrk, beside its references and a peer.

Prints requests/s, leads/s, p50, p99, errors and server CPU for 1-lead and 500-lead payloads at 1 and 32
connections (realistic, varied bodies: CRM-style and unknown categorical values, cycled through); the HTTP
ceiling (a trivial endpoint on the same server configuration); Seldon MLServer 1.7 with adaptive batching on the
packaged model, sent the same leads encoded (bench/mlserver.py); the in-process model limit (XGBoost
inplace_predict, one core) and the service's predictor on 2 cores beside `score_table` on a 1 M-row table; the
memory of the whole service (1 worker, every process of its tree) at peak under load; and our figures as ratios.
With --lake-modes it also measures the lake's cost (sync, async, off). Results go to bench/results/latest.json.

    ./dev bench                 # about 3 minutes
    ./dev bench --lake-modes    # adds the lake sync/async/off comparison (about 5 minutes)
    ./dev bench --unknown-values   # adds leads of CRM-style and unknown values, in process (about 2 minutes)
    ./dev bench --explain-cases    # adds 1 and 500 leads with `explain` beside without, and the TreeSHAP kernel
    uv run --no-sync python bench/run.py --seconds 5   # shorter runs on a busy machine
    uv run --no-sync python bench/run.py --memory-only --seconds 20   # the memory case alone (results/memory.json)
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
from typing import Any, ClassVar

import httpx
import numpy as np
import orjson
import pyarrow as pa
import xgboost as xgb

# bench/ is the script's directory, so on its path: the MLServer peer and the CRM forms of the unknown-values bench.
from mlserver import MLServer, ensure_venv, v2_bodies
from unknown_values import CATEGORY_NAMES, CRM_FORMS

from leadscore.columnar import CHUNK_ROWS, score_table
from leadscore.features.encode import encode
from leadscore.loadtest.data import synthetic_leads
from leadscore.model.bundle import BOOSTER_FILE, default_bundle_dir, load_bundle
from leadscore.training.synth import synthesize, table_to_columns

ROOT = Path(__file__).resolve().parent
WRK_SCRIPT = ROOT / "wrk_post.lua"
WRK_BODIES_SCRIPT = ROOT / "wrk_bodies.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def varied_leads(n: int, seed: int) -> list[dict[str, Any]]:
    """Synthetic leads, a third with CRM picklist forms and a sixth with values no map knows (bench/unknown_values)."""
    leads = synthetic_leads(n, seed=seed, prefix="lead")
    rng = np.random.default_rng(seed)
    for i, lead in enumerate(leads):
        draw = rng.random()
        for name in CATEGORY_NAMES:
            if name not in lead:
                continue
            if draw < 1 / 3:
                lead[name] = CRM_FORMS[name].get(lead[name], lead[name])
            elif draw < 0.5:
                lead[name] = f"unheard-of {name} {i % 11}"
        if draw > 0.9:
            lead["existing_customer"] = None  # some CRM exports leave booleans empty
    return leads


def payloads(workdir: Path) -> dict[str, tuple[Path, int]]:
    """The benchmark bodies, one per line of a file wrk cycles through: 256 single leads and 16 of 500 leads."""
    bodies = {"1-lead": [[lead] for lead in varied_leads(256, seed=21)],
              "500-lead": [varied_leads(500, seed=100 + s) for s in range(16)]}  # fmt: skip
    out = {}
    for case, requests in bodies.items():
        path = workdir / f"{case}.jsonl"
        path.write_bytes(b"\n".join(orjson.dumps({"leads": leads}) for leads in requests) + b"\n")
        out[case] = (path, len(requests[0]))
    return out


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

    # The interpreter that serves: this one by default (the development environment, whose test and Spark tools
    # pyarrow also imports: pandas, on its first conversion); `--server-python` gives one synced as the container
    # is (`uv sync --no-default-groups`), to measure what a deployed task holds.
    python: ClassVar[str] = sys.executable

    def __init__(self, workers: int, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        log = (workdir / f"server-{self.port}.log").open("wb")
        full_env = {**os.environ, "LEADSCORE_SPOOL_DIR": str(workdir / "spool"),
                    "LEADSCORE_LAKE_URI": str(workdir / "lake"), **env}  # fmt: skip
        self.process = subprocess.Popen(
            [self.python, "-m", "leadscore", "serve", "--port", str(self.port), "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        deadline = time.monotonic() + 180  # a busy machine loads the model (and numba's kernel) slowly
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


def wrk(url: str, path: str, bodies: Path | None, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run POSTing the bodies of `bodies` in turn (a GET when None); its summary from the Lua `done` hook."""
    env = {**os.environ, "BODIES": str(bodies) if bodies else "", "BODY": ""}
    script = WRK_BODIES_SCRIPT if bodies else WRK_SCRIPT
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url + path],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    return dict(json.loads(line))


def measure(
    server: Server | MLServer, path: str, body: Path | None, leads: int, connections: int, seconds: int
) -> dict[str, Any]:
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


def table_limit(rows: int, repeats: int = 2) -> dict[str, float]:
    """`score_table` on a `rows`-row table beside the service's predictor alone on the same rows, both on 2 cores.

    The predictor's limit: the encoded matrix predicted in `score_table`'s chunks by as many threads as cores
    (oneDAL releases the GIL), nothing else. `score_table` adds reading, checking and encoding the Arrow columns.
    """
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only this figure uses threads

    scorer = load_bundle(default_bundle_dir())
    base = synthesize(min(rows, 100_000), seed=8)
    table = pa.concat_tables([base] * (rows // base.num_rows)).drop_columns(["outcome"])
    now = datetime.now(UTC)
    matrices = [
        encode(table_to_columns(base.slice(start, CHUNK_ROWS)), min(CHUNK_ROWS, base.num_rows - start), now).matrix
        for start in range(0, base.num_rows, CHUNK_ROWS)
    ] * (rows // base.num_rows)
    cores = os.cpu_count() or 1
    best_predict = best_table = float("inf")
    with ThreadPoolExecutor(max_workers=cores) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(scorer.predict_proba, matrices))
            best_predict = min(best_predict, time.perf_counter() - t0)
            t0 = time.perf_counter()
            score_table(table, bundle=scorer, as_of=now)
            best_table = min(best_table, time.perf_counter() - t0)
    n = table.num_rows
    return {"rows": n, "cores": cores, "predictor_rows_per_s": round(n / best_predict),
            "score_table_rows_per_s": round(n / best_table),
            "score_table_of_predictor": round(best_predict / best_table, 3)}  # fmt: skip


def _tree_memory(pid: int) -> tuple[float, float, list[tuple[str, int, int]]]:
    """RSS and PSS (MiB) summed over `pid` and its descendants, and each process's (command, RSS, PSS)."""
    rss = pss = 0
    each = []
    for p in [pid, *_descendants(pid)]:
        try:
            fields = {
                line.split(":")[0]: int(line.split()[1]) // 1024
                for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
                if line.startswith(("Rss:", "Pss:"))
            }
            argv = Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace").split("\0")
            command = " ".join([Path(argv[0]).name, *argv[1:]]).strip()[:80]  # no path of this machine
        except (FileNotFoundError, ProcessLookupError):
            continue
        rss += fields["Rss"]
        pss += fields["Pss"]
        each.append((command, fields["Rss"], fields["Pss"]))
    return rss, pss, each


def memory_peak(body: Path, workdir: Path, seconds: int) -> dict[str, Any]:
    """The whole service as the default ECS task runs it (1 worker), at peak under 500-lead load, lake on.

    Sums RSS and PSS over every process of the tree (supervisor, worker, the lake's committer child), sampled
    every 100 ms while wrk sends 500-lead bodies at 32 connections; PSS counts shared pages once.
    """
    server = Server(1, {}, workdir / "memory")
    try:
        after_start = _tree_memory(server.process.pid)
        load = subprocess.Popen(  # the same wrk run as measure(), in the background while we sample
            ["wrk", "-t1", "-c32", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_BODIES_SCRIPT),
             server.url + "/api/v1/scoring/score"],
            env={**os.environ, "BODIES": str(body)}, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        peak: tuple[float, float, list[tuple[str, int, int]]] = (0.0, 0.0, [])
        each_peak: dict[str, int] = {}  # each process's own peak RSS (they need not peak at once)

        def sample() -> None:
            nonlocal peak
            now = _tree_memory(server.process.pid)
            peak = max(peak, now)
            for command, rss, _ in now[2]:
                each_peak[command] = max(each_peak.get(command, 0), rss)

        while load.poll() is None:
            sample()
            time.sleep(0.1)
        # The committer keeps converting the load's rows after it ends: keep sampling while it does.
        for _ in range(50):
            sample()
            time.sleep(0.1)
    finally:
        server.stop()
    return {"workers": 1, "after_start_rss_mib": round(after_start[0]), "after_start_pss_mib": round(after_start[1]),
            "after_start_processes": [{"command": c, "rss_mib": r, "pss_mib": p} for c, r, p in after_start[2]],
            "lake_commits": server.lake_commits(seconds + 5, 1),
            "peak_rss_mib": round(peak[0]), "peak_pss_mib": round(peak[1]),
            "processes_at_peak": [{"command": c, "rss_mib": r, "pss_mib": p} for c, r, p in peak[2]],
            "each_process_peak_rss_mib": each_peak,
            "budget_mib": 800}  # fmt: skip


def run_mlserver(args: argparse.Namespace, bodies: dict[str, tuple[Path, int]], workdir: Path) -> list[dict[str, Any]]:
    """The same leads, encoded once, sent to MLServer with adaptive batching at 1 and 32 connections."""
    executable = ensure_venv(args.mlserver_venv)
    runs: list[dict[str, Any]] = []
    v2_files: dict[str, tuple[Path, int]] = {}
    for case, (path, leads) in bodies.items():
        v2 = v2_bodies(path.read_bytes().splitlines())
        v2_path = workdir / f"{case}.v2.jsonl"
        v2_path.write_bytes(b"\n".join(v2) + b"\n")
        v2_files[case] = (v2_path, leads)
    server = MLServer(executable, workdir / "mlserver", (free_port(), free_port(), free_port()))
    try:
        for case, (path, leads) in v2_files.items():
            server.check(path.read_bytes().splitlines()[0])
            for connections in (1, 32):
                row = measure(server, MLServer.path, path, leads, connections, args.seconds)
                runs.append({"case": case, "lake": "none", "server": "mlserver", **row})
                print(f"{case:10} mlserver   {row}")
    finally:
        server.stop()
    return runs


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


def memory_only(args: argparse.Namespace, bodies: dict[str, tuple[Path, int]], workdir: Path) -> None:
    """The memory case alone (about a minute), written to `args.out`."""
    memory = memory_peak(bodies["500-lead"][0], workdir, args.seconds)
    print(f"memory, 1 worker, 500-lead load: {json.dumps(memory, indent=1)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              "seconds": args.seconds, "memory": memory}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    """The command line; --out defaults by case."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lake-modes", action="store_true", help="also compare lake sync/async/off")
    parser.add_argument(
        "--unknown-values", action="store_true", help="also score CRM-style and unknown values in process"
    )
    parser.add_argument("--explain-cases", action="store_true", help="also score with explain (bench/explain.py)")
    parser.add_argument("--no-mlserver", action="store_true", help="skip the MLServer peer")
    parser.add_argument(
        "--mlserver-venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "leadscore-bench" / "mlserver-venv",
        help="MLServer's own virtual environment (created with uv on first use, outside the project's lock)",
    )
    parser.add_argument("--table-rows", type=int, default=1_000_000, help="rows of the score_table figure")
    parser.add_argument("--memory-only", action="store_true", help="only the memory case (to --out memory.json)")
    parser.add_argument(
        "--server-python",
        default=sys.executable,
        help="the interpreter that runs leadscore serve (e.g. .venv-prod/bin/python after "
        "UV_PROJECT_ENVIRONMENT=.venv-prod uv sync --locked --no-default-groups)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: results/latest.json (memory.json alone)")
    args = parser.parse_args()
    if args.out is None:
        args.out = ROOT / "results" / ("memory.json" if args.memory_only else "latest.json")
    return args


def main() -> None:
    args = parse_args()
    Server.python = args.server_python
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk); ./dev bench installs it")

    workdir = Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    bodies = payloads(workdir)
    if args.memory_only:
        memory_only(args, bodies, workdir)
        return
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                              "workers": args.workers, "seconds_per_run": args.seconds}  # fmt: skip
    print(f"machine: {report['machine']}")
    report["model_limit"] = model_limit()
    print(f"model limit (XGBoost inplace_predict, one core): {report['model_limit']}")
    if args.unknown_values:
        import unknown_values  # noqa: PLC0415 - bench/ is the script's directory, so on its path

        report["unknown_values"] = unknown_values.figures()
        print(f"unknown values (in process, us per call and ratios to clean): {report['unknown_values']}")

    report["table_limit"] = table_limit(args.table_rows)
    print(f"score_table beside the predictor alone, in process: {report['table_limit']}")
    runs = run_modes(args, bodies, workdir, report)
    if not args.no_mlserver:
        runs += run_mlserver(args, bodies, workdir)
    report["runs"] = runs
    if args.explain_cases:
        import explain  # noqa: PLC0415 - bench/explain.py, beside this script

        report["explain"] = explain.server_cases(
            Server(args.workers, {}, workdir / "explain"), measure, bodies, args.seconds
        )
    report["memory"] = memory_peak(bodies["500-lead"][0], workdir, args.seconds)
    print(f"memory, 1 worker, 500-lead load: {report['memory']}")

    ceiling = next(r for r in runs if r["case"] == "http-ceiling" and r["connections"] == 32)["requests_per_s"]
    limit = report["model_limit"]
    ratios = {}
    peers = {r["case"]: r for r in runs if r.get("server") == "mlserver" and r["connections"] == 32}
    for r in runs:
        if r["lake"] != "sync" or r["case"] == "http-ceiling" or r["connections"] != 32:
            continue
        key = "batch_1_leads_per_s_per_core" if r["case"] == "1-lead" else "batch_500_leads_per_s_per_core"
        ratios[r["case"]] = {
            "of_http_ceiling_rps": round(r["requests_per_s"] / ceiling, 3),
            "of_model_limit_leads_per_core": round(r["leads_per_s"] / limit[key], 3),
            "of_model_limit_leads_all_cores": round(r["leads_per_s"] / (limit[key] * (os.cpu_count() or 1)), 3),
        }
        if r["case"] in peers:
            ratios[r["case"]]["of_mlserver_leads"] = round(r["leads_per_s"] / peers[r["case"]]["leads_per_s"], 3)
    report["ratios"] = ratios
    print(f"ratios at 32 connections: {json.dumps(ratios)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
