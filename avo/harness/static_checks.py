"""Static checks on a candidate's source, before any of it runs.

A candidate must be one Python file that defines the problem's entry point
(its SIGNATURE: `attention(q, k, v, causal=False, sm_scale=None)`,
`rmsnorm(x, w, eps=1e-6)`) and does the work in Triton kernels it defines.
These checks reject, by reading the syntax tree, what the contract forbids:

- imports outside a small allow-list (no os/sys/ctypes/subprocess/importlib/
  threading/time...), so the file cannot reach the process, the clock or other
  libraries;
- library compute for the main work: torch/library attention, matmul, softmax,
  norms, einsum, linear, the `@` operator outside Triton kernels;
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
                        "torch.cuda.memory", "torch.testing", "triton.testing", "triton.runtime",
                        # files, processes and code loading reachable from torch/triton
                        # (torch.save/load write and unpickle anywhere; torch.hub downloads)
                        "torch.load", "torch.save", "torch.from_file", "torch.hub", "torch.multiprocessing",
                        "torch.distributed", "torch.package", "torch.onnx", "torch.serialization",
                        "torch.jit", "torch.export", "torch.compiler", "torch.storage", "torch.UntypedStorage",
                        "torch.TypedStorage", "torch.set_default_dtype", "torch.set_default_device",
                        "torch.set_default_tensor_type", "torch.set_float32_matmul_precision",
                        "triton.tools")
# Standard-library modules that torch and triton re-export as attributes
# (`torch.os`, `torch.sys`, `torch.ctypes`, `torch.threading`, ...: found by the
# adversarial suite): reaching one gives the process, files, clocks and the
# harness's own memory without an import statement. No kernel needs them.
MODULE_ATTRS = {
    "os", "sys", "ctypes", "subprocess", "importlib", "builtins", "platform", "threading", "inspect",
    "multiprocessing", "io", "pathlib", "shutil", "socket", "signal", "time", "gc", "pickle", "marshal",
    "weakref", "atexit", "tempfile", "glob", "types", "traceback", "runpy", "pkgutil", "site", "sysconfig",
    "mmap", "fcntl", "resource", "asyncio", "concurrent", "queue", "code", "codeop", "logging", "posix",
    "urllib", "http", "ssl", "shelve", "sqlite3", "zipfile", "tarfile", "gzip", "bz2", "lzma", "pty",
    "faulthandler", "tracemalloc", "linecache", "webbrowser", "warnings", "copyreg", "dis",
}
FORBIDDEN_NAMES = {
    # library compute for the main work
    "scaled_dot_product_attention", "sdpa_kernel", "flash_attn", "flash_attn_func",
    "matmul", "mm", "bmm", "cdist", "baddbmm", "addmm", "addbmm", "einsum", "tensordot", "linear",
    "softmax", "log_softmax", "functional", "cudnn", "cublas", "chain_matmul", "multi_dot",
    "rms_norm", "layer_norm", "native_layer_norm", "group_norm", "batch_norm", "vector_norm",
    "nn", "ops", "library", "compile", "cpp_extension", "load_inline", "testing", "runtime",
    # escape hatches
    "exec", "eval", "open", "getattr", "setattr", "delattr", "globals", "locals", "vars",
    "__import__", "__builtins__", "breakpoint", "input", "memoryview",
}
FORBIDDEN_DUNDER_OK = {"__name__", "__init__", "__doc__", "__file__"}


@dataclass(frozen=True)
class Violation:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class SourceError(Exception):
    """The file is not a candidate at all (syntax error, no entry point)."""


def parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as e:
        where = f" at line {e.lineno}" if e.lineno else ""  # null bytes: no line number
        raise SourceError(f"syntax error{where}: {e.msg}") from None


def check_contract(tree: ast.Module, problem=None) -> None:
    """Raise SourceError unless the file defines the problem's entry point and a Triton
    kernel. problem=None: the entry point of any problem module this process has loaded
    (the default problem's first; its name is the one an error message gives). Which
    entry is required is finally the judge's business: the runner calls the judge's
    problem's entry and reports a file without it."""
    from avo.problem import entry_inputs, entry_name, loaded_problems

    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    problems = [problem] if problem is not None else loaded_problems()
    found = [p for p in problems if entry_name(p) in fns] or problems[:1]
    wanted, name = found[0], entry_name(found[0])
    if name not in fns:
        raise SourceError(f"no top-level function `{wanted.SIGNATURE}`")
    params, needed = [a.arg for a in fns[name].args.args], entry_inputs(wanted)
    if params[:len(needed)] != needed:
        raise SourceError(f"`{name}` must take ({wanted.SIGNATURE.split('(', 1)[1]}; it takes {params}")
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
    aliases: dict[str, str] = {}  # local name -> dotted module path, for `T.load` with `import torch as T`
    out: list[Violation] = []
    jit_bodies = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and _is_triton_jit(fn)
                  for n in ast.walk(fn)}

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                out += _check_import(alias.name, line)
                imported_modules.add((alias.asname or alias.name).split(".")[0])
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
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
                aliases[alias.asname or alias.name] = f"{mod}.{alias.name}"
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            out.append(Violation(line, f"`{node.id}` is not allowed in a candidate"))
        elif isinstance(node, ast.Name) and node.id.startswith("__") and node.id not in FORBIDDEN_DUNDER_OK:
            # __loader__.get_data(path) reads any file, __spec__ leads to the import system
            out.append(Violation(line, f"`{node.id}` is not allowed in a candidate"))
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node, aliases)
            if node.attr in MODULE_ATTRS:
                out.append(Violation(line, f"`.{node.attr}` reaches the `{node.attr}` module, which is not allowed"))
            elif node.attr in FORBIDDEN_NAMES:
                out.append(Violation(line, f"`.{node.attr}` is not allowed in a candidate"))
            elif dotted and _check_import(dotted, line, whole_only=True):
                out.append(Violation(line, f"`{dotted}` is not allowed in a candidate"))
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


def _dotted(node: ast.Attribute, aliases: dict[str, str]) -> str | None:
    """`T.cuda.memory` -> "torch.cuda.memory" when T is an alias of torch; None
    unless the chain is plain names and attributes rooted at an imported name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id]] + parts[::-1])


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def check_source(source: str, problem=None) -> list[Violation]:
    """Parse, check the contract (raises SourceError) and return the violations.
    problem: the problem module the file is a candidate for (see check_contract)."""
    tree = parse(source)
    check_contract(tree, problem)
    return find_violations(tree)
