"""Static checks on a candidate's source, before any of it runs.

A candidate must be one Python file that defines `attention(q, k, v, causal,
sm_scale)` and does the work in Triton kernels it defines. These checks reject,
by reading the syntax tree, what the contract forbids:

- imports outside a small allow-list (no os/sys/ctypes/subprocess/importlib/
  threading/time...), so the file cannot reach the process, the clock or other
  libraries;
- library compute for the main work: torch/library attention, matmul, softmax,
  einsum, linear, the `@` operator outside Triton kernels;
- escape hatches: exec/eval/compile/open/getattr/setattr/globals/__import__,
  private attributes (`torch._C`, `x.__dict__`), assignment to attributes of
  imported modules (monkey-patching torch, triton or the harness).

Static checks are a first line only: the worker also watches the calls at run
time (guard.py) and the numbers decide correctness. See runner.py for what the
sandbox as a whole does not protect against.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

ALLOWED_IMPORTS = {"math", "functools", "typing", "__future__", "itertools", "dataclasses",
                   "torch", "triton"}
# modules under an allowed root that still give access to library compute or internals
FORBIDDEN_SUBMODULES = ("torch.nn", "torch.ops", "torch.backends", "torch.utils", "torch.library",
                        "torch.cuda.memory", "torch.testing", "triton.testing", "triton.runtime")
FORBIDDEN_NAMES = {
    # library compute for the main work
    "scaled_dot_product_attention", "sdpa_kernel", "flash_attn", "flash_attn_func",
    "matmul", "mm", "bmm", "baddbmm", "addmm", "addbmm", "einsum", "tensordot", "linear",
    "softmax", "log_softmax", "functional", "cudnn", "cublas", "chain_matmul", "multi_dot",
    "nn", "ops", "library", "compile", "cpp_extension", "load_inline", "testing", "runtime",
    # escape hatches
    "exec", "eval", "open", "getattr", "setattr", "delattr", "globals", "locals", "vars",
    "__import__", "__builtins__", "breakpoint", "input", "memoryview",
}
FORBIDDEN_DUNDER_OK = {"__name__", "__init__", "__doc__"}


@dataclass(frozen=True)
class Violation:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class SourceError(Exception):
    """The file is not a candidate at all (syntax error, no `attention`)."""


def parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as e:
        raise SourceError(f"syntax error at line {e.lineno}: {e.msg}") from None


def check_contract(tree: ast.Module) -> None:
    """Raise SourceError unless the file defines the entry point and a Triton kernel."""
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if "attention" not in fns:
        raise SourceError("no top-level function `attention(q, k, v, causal=False, sm_scale=None)`")
    params = [a.arg for a in fns["attention"].args.args]
    if params[:3] != ["q", "k", "v"]:
        raise SourceError(f"`attention` must take (q, k, v, causal=False, sm_scale=None); it takes {params}")
    if not any(_is_triton_jit(fn) for fn in fns.values()):
        raise SourceError("no @triton.jit kernel: the work must be done by Triton kernels the file defines")


def _is_triton_jit(fn: ast.FunctionDef) -> bool:
    for dec in fn.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        text = ast.unparse(target)
        if text in ("triton.jit", "jit") or text.endswith(".jit"):
            return True
    return False


def find_violations(tree: ast.Module) -> list[Violation]:
    imported_modules: set[str] = set()
    out: list[Violation] = []
    jit_bodies = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and _is_triton_jit(fn)
                  for n in ast.walk(fn)}

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                out += _check_import(alias.name, line)
                imported_modules.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                out.append(Violation(line, "relative imports are not allowed"))
            out += _check_import(mod, line)
            for alias in node.names:
                out += _check_import(f"{mod}.{alias.name}", line, whole_only=True)
                if alias.name in FORBIDDEN_NAMES:
                    out.append(Violation(line, f"`{alias.name}` is not allowed in a candidate"))
                imported_modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            out.append(Violation(line, f"`{node.id}` is not allowed in a candidate"))
        elif isinstance(node, ast.Attribute):
            if node.attr in FORBIDDEN_NAMES:
                out.append(Violation(line, f"`.{node.attr}` is not allowed in a candidate"))
            elif node.attr.startswith("_") and node.attr not in FORBIDDEN_DUNDER_OK:
                out.append(Violation(line, f"private attribute `.{node.attr}` is not allowed"))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult) and id(node) not in jit_bodies:
            out.append(Violation(line, "`@` (matmul) outside a Triton kernel is library compute"))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            out.append(Violation(line, "`global`/`nonlocal` state is not allowed (results may not be kept)"))

    # monkey-patching: assigning to or deleting an attribute of an imported module
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and _root_name(sub) in imported_modules:
                    out.append(Violation(node.lineno, f"assigning to `{ast.unparse(sub)}` patches a library"))
    return sorted(set(out), key=lambda v: v.line)


def _check_import(name: str, line: int, whole_only: bool = False) -> list[Violation]:
    root = name.split(".")[0]
    if not whole_only and root not in ALLOWED_IMPORTS:
        return [Violation(line, f"import of `{name}` is not allowed (allowed: {', '.join(sorted(ALLOWED_IMPORTS))})")]
    for bad in FORBIDDEN_SUBMODULES:
        if name == bad or name.startswith(bad + "."):
            return [Violation(line, f"import of `{name}` is not allowed in a candidate")]
    return []


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def check_source(source: str) -> list[Violation]:
    """Parse, check the contract (raises SourceError) and return the violations."""
    tree = parse(source)
    check_contract(tree)
    return find_violations(tree)
