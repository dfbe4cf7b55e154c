"""The evaluation harness: judges untrusted candidate kernels in a subprocess.

    from avo.harness import evaluate
    result = evaluate("kernel.py", device="auto", suite=None)   # -> EvalResult

See runner.py for the sandbox and what it does not protect against, and
worker.py for the stages and checks. Importing this package does not import
torch; the worker does.
"""
from avo.harness.runner import DEFAULT_PROBLEM, UnknownSuite, detect_device, evaluate

__all__ = ["evaluate", "detect_device", "UnknownSuite", "DEFAULT_PROBLEM"]
