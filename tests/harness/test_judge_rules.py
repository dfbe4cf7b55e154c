"""The judge's pure rules, in milliseconds: the overfit flag and the commit rule that
honours it; the allowlists that decide library compute; the arena's layout."""
from avo.commit_rule import should_commit
from avo.harness.allowlist import kernel_names, library_compute
from avo.harness.judge import overfit_flag
from avo.records import ConfigTiming, EvalResult


def row(name, tflops, cudnn):
    return ConfigTiming(config=name, ms=1.0, tflops=tflops, cudnn_tflops=cudnn)


def test_a_kernel_special_casing_the_suite_is_flagged_and_never_commits():
    suite = [row("a", 700, 600), row("b", 720, 600)]  # 1.18x cuDNN on the suite
    held = [row("h", 450, 600)]  # 0.75x on a shape it has not seen
    flag = overfit_flag(suite, held)
    assert flag.startswith("overfit") and "held-out" in flag
    result = EvalResult(status="ok", timings=suite, heldout=held, flags=[flag])
    ok, why = should_commit(result, best_geomean=100.0, margin=0.01)
    assert not ok and "overfit" in why


def test_a_kernel_as_good_on_held_out_shapes_is_not_flagged():
    assert overfit_flag([row("a", 610, 600)], [row("h", 560, 600)]) == ""
    assert overfit_flag([row("a", 1e-4, None)], [row("h", 1e-4, None)]) == ""  # CPU: no baseline, no flag


def test_kernel_allowlist_names_only_the_candidates_jit_functions():
    src = "import triton\n@triton.jit\ndef _fwd(X):\n    pass\n@gluon.jit\ndef _ws(X):\n    pass\ndef attention(q, k, v):\n    pass\n"
    assert kernel_names(src) == ["_fwd", "_ws"]
    own = {"kernels": {"_fwd": 8, "void at::native::vectorized_elementwise_kernel<4, FillFunctor<float>>": 2}}
    assert library_compute(own, ["_fwd"], "cuda", 10) == ""
    gemm = {"kernels": {"_fwd": 8, "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64": 8}}
    assert "library compute" in library_compute(gemm, ["_fwd"], "cuda", 10)
    cudnn = {"kernels": {"cudnn_generated_fort_native_sdpa_sm90_flash_fprop": 1}}
    assert "cudnn" in library_compute(cudnn, ["_fwd"], "cuda", 10)


def test_aten_allowlist_free_ops_budgeted_elementwise_and_forbidden_rest():
    assert library_compute({"ops": {"aten::empty_like": 4, "aten::copy_": 4}}, [], "cpu", 1000) == ""
    over = {"ops": {"aten::mul": 1}, "op_elements": {"aten::mul": 10**9}}
    assert "element-wise" in library_compute(over, [], "cpu", 1000)
    assert "aten::amax" in library_compute({"ops": {"aten::amax": 1}}, [], "cpu", 1000)
    assert "aten::embedding_bag" in library_compute({"ops": {"aten::embedding_bag": 1}}, [], "cpu", 1000)
