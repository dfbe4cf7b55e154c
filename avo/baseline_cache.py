"""cuDNN and FA2 timed once per GPU and session, not once per candidate.

The judge used to time both baselines on every configuration of the suite before
each candidate: more GPU time than the candidate itself. The cache keeps, per GPU,
the rows a baselines job of the judge measured (avo.harness.runner.time_baselines),
and hands them to later judges on the same GPU. Drift: every `drift_every_s` the
screen's configurations are re-timed; when their cuDNN geomean moved by more than
`tolerance` (clocks, thermals, another tenant), every row of that GPU is dropped and
timed again, and the event is kept. Plain Python; the file is a JSON document in the
run's state folder, so a resumed run within the drift interval reuses it.

It also keeps, per GPU, the suite figures of kernels measured there in full (by source
hash): the cascade's yardstick is the best version as timed on the GPU that judges
the candidate, not as recorded on another GPU or day (avo/evaluator.py). A drift
drops them with the baselines.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from avo.atomic_files import atomic_write
from avo.records import geomean


KEEP_KERNELS = 64  # kernels' figures kept per GPU (the best and recent whole-suite candidates)


class BaselineCache:
    def __init__(self, path: Path | None, drift_every_s: float = 600.0, tolerance: float = 0.03,
                 clock=time.time):
        self.path, self.drift_every_s, self.tolerance, self.clock = path, drift_every_s, tolerance, clock
        self.lock = threading.Lock()
        # gpu key -> {"rows": {config: {backend: row}}, "checked_at", "events", "kernels": {sha256: figures}}
        self.gpus: dict[str, dict] = {}
        if path is not None and path.exists():
            try:
                self.gpus = json.loads(path.read_text()).get("gpus", {})
            except (OSError, ValueError):
                self.gpus = {}  # a torn or foreign file: start empty (baselines are re-timed, nothing is lost)

    # ------------------------------------------------------------------ reads
    def rows(self, gpu: str) -> dict:
        with self.lock:
            return json.loads(json.dumps(self.gpus.get(gpu, {}).get("rows", {})))  # a copy

    def has(self, gpu: str, configs: list[str], columns: tuple[str, ...] = ("cudnn", "fa2")) -> bool:
        """Every config has a row for every baseline column (the problem's: attention's cudnn, fa2)."""
        if not columns:  # a problem without library baselines: nothing to time, nothing to wait for
            return True
        rows = self.gpus.get(gpu, {}).get("rows", {})
        return all(c in rows and set(columns) <= set(rows[c]) for c in configs)

    def measured(self, gpu: str, sha256: str) -> dict | None:
        """A kernel's figures on this GPU ({"status", "geomean", "tflops": {config: TFLOPS}}), if measured."""
        with self.lock:
            found = self.gpus.get(gpu, {}).get("kernels", {}).get(sha256)
            return json.loads(json.dumps(found)) if found is not None else None

    def gpu_model(self, gpu: str) -> str | None:
        """The GPU model its baselines were timed on (None before the first)."""
        with self.lock:
            return (self.gpus.get(gpu, {}).get("env") or {}).get("gpu")

    def drift_check_due(self, gpu: str) -> bool:
        entry = self.gpus.get(gpu)
        return bool(entry and entry.get("rows")) and self.clock() - entry.get("checked_at", 0) >= self.drift_every_s

    def events(self, gpu: str | None = None) -> list[dict]:
        return [e for g, entry in self.gpus.items() if gpu in (None, g) for e in entry.get("events", [])]

    # ----------------------------------------------------------------- writes
    def add(self, gpu: str, timed: dict, env: dict | None = None) -> None:
        """Rows a judge timed (its record's env.baselines_timed) join the cache."""
        if not timed:
            return
        with self.lock:
            entry = self.gpus.setdefault(gpu, {"rows": {}, "checked_at": self.clock(), "events": []})
            for config, backends in timed.items():
                entry["rows"].setdefault(config, {}).update(backends)
            if env:
                entry["env"] = _software(env)
            self._save()

    def check_software(self, gpu: str, env: dict) -> bool:
        """False, and every row and kernel figure of the GPU dropped (to be timed again),
        when a judge's record names another GPU model, driver, torch, cuDNN or Triton than
        the cache's figures were timed with (a resumed run after an upgrade)."""
        with self.lock:
            entry = self.gpus.get(gpu)
            now = _software(env)
            if not entry or not entry.get("env") or entry["env"] == now:
                return True
            entry["events"].append({"at": round(self.clock(), 1), "action": "software changed: dropped",
                                    "was": entry["env"], "now": now})
            entry.update(rows={}, kernels={}, env=now)
            self._save()
            return False

    def add_measured(self, gpu: str, kernel: str, status: str, geomean_tflops: float | None,
                     tflops: dict, tries: int = 1) -> None:
        """A kernel's whole-suite figures on this GPU (`kernel`: the caller's key, e.g. suite
        and source hash; status other than "ok": it could not be measured here). The newest
        KEEP_KERNELS are kept."""
        with self.lock:
            entry = self.gpus.setdefault(gpu, {"rows": {}, "checked_at": self.clock(), "events": []})
            kernels = entry.setdefault("kernels", {})
            kernels.pop(kernel, None)  # re-inserted last: the dict's order is the age
            kernels[kernel] = {"status": status, "geomean": geomean_tflops, "tflops": dict(tflops),
                               "tries": tries, "at": round(self.clock(), 1)}
            for old in list(kernels)[:-KEEP_KERNELS]:
                del kernels[old]
            self._save()

    def check_drift(self, gpu: str, fresh: dict) -> float | None:
        """Compare freshly timed rows with the cache: the relative change of the cuDNN
        geomean over the configs both have. Beyond the tolerance every row of the GPU
        is dropped (to be timed again) and the fresh rows kept; the event is recorded.
        Returns the drift (None when nothing was comparable)."""
        with self.lock:
            entry = self.gpus.setdefault(gpu, {"rows": {}, "checked_at": self.clock(), "events": []})
            common = [c for c in fresh if "cudnn" in fresh[c] and "cudnn" in entry["rows"].get(c, {})]
            entry["checked_at"] = self.clock()
            if not common:
                self._save()
                return None
            old = geomean([entry["rows"][c]["cudnn"]["tflops"] for c in common])
            new = geomean([fresh[c]["cudnn"]["tflops"] for c in common])
            drift = (new - old) / old if old else 0.0
            if abs(drift) > self.tolerance:  # kernels measured before the drift are measured again too
                entry["rows"] = {c: dict(fresh[c]) for c in fresh}
                entry["kernels"] = {}
                entry["events"].append({"at": round(self.clock(), 1), "drift": round(drift, 4),
                                        "configs": common, "action": "re-timed"})
            else:
                entry["events"].append({"at": round(self.clock(), 1), "drift": round(drift, 4),
                                        "configs": common, "action": "kept"})
            self._save()
            return drift

    def _save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps({"gpus": self.gpus}, indent=1))


def _software(env: dict) -> dict:
    return {k: env.get(k) for k in ("gpu", "driver", "torch", "cudnn", "triton")}
