"""What may run while a candidate is loaded: allowlists, not denylists.

The runner's profiler records every aten operator (on every thread) and, on a
GPU, every kernel. A candidate does its work in Triton kernels it defines; host
code around them allocates, views, copies and fills. So:

- GPU kernels: the candidate's own `@triton.jit` / `@gluon.jit` functions (by
  name), and PyTorch's copy, fill and element-wise kernels. Anything else —
  cuBLAS/CUTLASS GEMMs, cuDNN, FlashAttention, reductions, scans — is library
  compute.
- aten operators: allocation, views, copies and fills freely; a few
  element-wise operators within an element budget (a multiple of the calls'
  inputs and outputs: O(inputs) host arithmetic is fine, a broadcast product of
  S x S x D elements is not); any other operator is library compute.
"""
from __future__ import annotations

import ast
import re

FREE_OPS = re.compile(
    r"^aten::(empty.*|new_empty.*|new_zeros|new_ones|new_full|zeros.*|ones.*|full.*|scalar_tensor|lift_fresh.*|"
    r"set_|fill_|zero_|copy_|_to_copy|to|clone|contiguous|_local_scalar_dense|item|detach.*|alias.*|view.*|"
    r"_unsafe_view|_reshape_alias|reshape|as_strided.*|transpose.*|permute|expand.*|slice.*|select.*|"
    r"unsqueeze.*|squeeze.*|t|t_|unbind|split.*|narrow|resize_|is_same_size|record_stream|resolve_conj|"
    r"resolve_neg|result_type|is_nonzero|_has_compatible_shallow_copy_type|lift|stride|size|numel|dim|"
    r"_nested_tensor_from_mask_left_aligned|is_pinned|equal)$")
ELEMENTWISE_OPS = re.compile(
    r"^aten::(add|add_|sub|sub_|mul|mul_|div|div_|neg|abs|exp|exp2|log|log2|sqrt|rsqrt|maximum|minimum|"
    r"clamp.*|where|eq|ne|lt|le|gt|ge|floor_divide|remainder|bitwise_.*|logical_.*|masked_fill_?|"
    r"arange|rsub|reciprocal|fmod|ceil|floor|round)$")
ELEMENT_BUDGET_FACTOR = 16
ELEMENT_BUDGET_FLOOR = 1 << 20
TORCH_KERNELS = re.compile(r"(elementwise_kernel|CatArrayBatchedCopy|^Memcpy|^Memset|fill|copy|"
                           r"index_elementwise_kernel|vectorized_gather|FillFunctor)", re.IGNORECASE)
LIBRARY_HINT = re.compile(r"(gemm|cutlass|xmma|cublas|cudnn|flash|fmha|sdpa|attention|reduce|scan|softmax|"
                          r"splitK|gemv|dot_kernel)", re.IGNORECASE)


def kernel_names(source: str) -> list[str]:
    """Names of the functions the candidate decorates with a Triton/Gluon jit."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for dec in fn.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if ast.unparse(target).split(".")[-1] == "jit":
                    names.append(fn.name)
    return names


def library_compute(report: dict, own_kernels: list[str], device: str, io_elements: int) -> str:
    """'' if the activity is a candidate's own; else one line saying what is not."""
    own = set(own_kernels)
    for name, count in sorted((report.get("kernels") or {}).items()):
        short = str(name)
        if any(short == k or short.startswith(k + "_") or f" {k}(" in short or short.startswith(k + "(")
               for k in own):
            continue
        if TORCH_KERNELS.search(short) and not LIBRARY_HINT.search(short):
            continue
        return f"library compute: the GPU ran `{short[:120]}` ({count}x), not one of the candidate's kernels"
    budget = max(ELEMENT_BUDGET_FLOOR, ELEMENT_BUDGET_FACTOR * io_elements)
    elements = report.get("op_elements") or {}
    spent = 0
    for op, count in sorted((report.get("ops") or {}).items()):
        if FREE_OPS.match(op):
            continue
        if ELEMENTWISE_OPS.match(op):
            spent += int(elements.get(op, 0))
            continue
        return f"library compute: torch ran `{op}` ({count}x): the work must be done in the candidate's kernels"
    if spent > budget:
        return (f"library compute: host-side torch element-wise ops touched {spent} elements "
                f"(budget {budget}): the work must be done in Triton kernels")
    return ""
