"""Seldon MLServer 1.7 with adaptive batching, serving the packaged model, as a peer in `bench/run.py`.

MLServer is installed into its own virtual environment (`mlserver` + `mlserver-xgboost` from PyPI, with uv), not
into the project's: the project's lock stays untouched. MLServer's V2 inference protocol takes the model's input
matrix, not leads: the benchmark encodes its realistic lead payloads once, with the service's own encoder and
category map, and sends MLServer those matrices (missing values as JSON null, which MLServer's NumPy codec reads
as NaN). Its default `predict` output is what leadscore answers: mlserver-xgboost loads the booster as an
XGBRegressor (its first try), whose predict of a multi:softprob booster is the probabilities of the five scores.
MLServer does no validation, normalisation or encoding of leads and records nothing, so it does less work per lead
than leadscore: the comparison flatters it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import orjson

from leadscore.features.encode import LeadArrays, encode_arrays
from leadscore.model.bundle import BOOSTER_FILE, bundle_category_map, default_bundle_dir

# uvloop 0.22 broke MLServer 1.7's inference workers ("no current event loop", SeldonIO/MLServer#2286).
PACKAGES: Final = ("mlserver==1.7.*", "mlserver-xgboost==1.7.*", "uvloop<0.22")
MODEL_NAME: Final = "leadscore"
# Adaptive batching: up to 32 requests (the benchmark's connections) wait at most 5 ms to be predicted together.
MAX_BATCH_SIZE: Final = 32
MAX_BATCH_TIME: Final = 0.005
PARALLEL_WORKERS: Final = 2  # one inference process per core, as leadscore runs one worker per core


def ensure_venv(venv: Path) -> Path:
    """The `mlserver` executable of `venv`, created and installed with uv when missing."""
    executable = venv / "bin" / "mlserver"
    marker = venv / ".leadscore-bench"
    if executable.exists() and marker.is_file() and marker.read_text() == repr(PACKAGES):
        return executable
    # uv as ./dev installs it (pip, for the system python3), not the project's environment, which has none.
    found = shutil.which("uv")
    uv = [found] if found else ["python3", "-m", "uv"]
    if not venv.exists():
        subprocess.run([*uv, "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
    subprocess.run([*uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *PACKAGES], check=True)
    (venv / ".leadscore-bench").write_text(repr(PACKAGES))  # what was installed, so a changed list reinstalls
    return executable


def v2_bodies(lead_bodies: list[bytes]) -> list[bytes]:
    """The V2 inference request for each leadscore body: its leads encoded as the service encodes them."""
    from leadscore.api.decode import parse_leads  # noqa: PLC0415 - the service's own decoder, once per body

    categories = bundle_category_map(default_bundle_dir())
    now = datetime.now(UTC)
    out = []
    for body in lead_bodies:
        parsed = parse_leads(body)
        matrix = encode_arrays(LeadArrays.of(parsed.columns, parsed.size), now, categories=categories).matrix
        data = [None if np.isnan(v) else v for v in matrix.astype(np.float64).ravel().tolist()]
        request = {"inputs": [{"name": "input-0", "shape": list(matrix.shape), "datatype": "FP32", "data": data}]}
        out.append(orjson.dumps(request))
    return out


class MLServer:
    """`mlserver start` on a directory holding the packaged booster; stopped by its PID."""

    path: Final = f"/v2/models/{MODEL_NAME}/infer"

    def __init__(self, executable: Path, workdir: Path, ports: tuple[int, int, int]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        http_port, grpc_port, metrics_port = ports
        self.port = http_port
        shutil.copy(default_bundle_dir() / BOOSTER_FILE, workdir / BOOSTER_FILE)
        settings: dict[str, Any] = {"host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port,
                                    "metrics_port": metrics_port, "parallel_workers": PARALLEL_WORKERS,
                                    "debug": False, "metrics_dir": str(workdir / "metrics")}  # fmt: skip
        (workdir / "settings.json").write_text(json.dumps(settings))
        model = {"name": MODEL_NAME, "implementation": "mlserver_xgboost.XGBoostModel",
                 "max_batch_size": MAX_BATCH_SIZE, "max_batch_time": MAX_BATCH_TIME,
                 "parameters": {"uri": f"./{BOOSTER_FILE}"}}  # fmt: skip
        (workdir / "model-settings.json").write_text(json.dumps(model))
        log = (workdir / "mlserver.log").open("wb")
        self.process = subprocess.Popen(
            [str(executable), "start", str(workdir)],
            # Its inference workers are spawned with the working directory on their path: run from bench/, this
            # file (mlserver.py) would shadow the mlserver package there.
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLSERVER_LOGGING_LEVEL": "WARNING"},
            start_new_session=True,  # its inference workers stop with it
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/v2/models/{MODEL_NAME}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"MLServer did not become ready; see {workdir / 'mlserver.log'}")

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def check(self, body: bytes) -> None:
        """RuntimeError unless MLServer answers `body` with one probability row per lead."""
        response = httpx.post(self.url + self.path, content=body, headers={"content-type": "application/json"})
        if response.status_code != 200:
            raise RuntimeError(f"MLServer answered {response.status_code}: {response.text[:500]}")
        output = response.json()["outputs"][0]
        rows = orjson.loads(body)["inputs"][0]["shape"][0]
        if output["shape"] != [rows, 5]:
            raise RuntimeError(f"MLServer answered shape {output['shape']} for {rows} rows")

    def stop(self) -> None:
        """SIGTERM to its process group (the server and its inference workers), SIGKILL if it lingers."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
