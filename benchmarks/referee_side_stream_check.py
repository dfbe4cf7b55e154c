"""H100: the thread + side-stream attack (45% of the heads launched from a thread on a
stream never joined) against the honest kernel it is built from, same config, same run.
Under the judge's clock the side stream's work is inside the batch: it must gain nothing.

    PYTHONPATH=. python benchmarks/referee_side_stream_check.py
"""
import json
import os

from avo.harness import evaluate
from avo.problem import load_problem
from tests.adversarial import attacks as A

CONFIG = [load_problem().SUITES["mha"][0].name]
honest = evaluate(A.BASE.read_text(), device="cuda", configs=CONFIG)
attack = evaluate(A.gpu_source("gpu_thread_launch_side_stream"), device="cuda", configs=CONFIG, static_checks=False)
rows = {}
for name, r in (("honest base", honest), ("thread + side stream", attack)):
    t = r.timings[0] if r.timings else None
    rows[name] = {"status": r.status, "message": r.message, "tflops": t.tflops if t else None,
                  "ratio_cudnn": t.ratio_cudnn if t else None, "spread": t.spread if t else None}
    print(f"{name:22} {r.status:10} {t.tflops if t else 0:8.1f} TFLOPS  spread {t.spread if t else 0}  {r.message}")
if os.environ.get("OUT"):
    with open(os.path.join(os.environ["OUT"], "side_stream_check.json"), "w") as f:
        json.dump({"config": CONFIG[0], "rows": rows, "env": honest.env}, f, indent=2)
