"""avo.profiling on the CPU: ncu's raw CSV parsed into a Profile, its summary and
delta, the command line, the one-line 'unavailable' answers, a sandboxed run
against a stand-in ncu, hostile read-back, and the compiled-code excerpts."""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from avo.profiling import Profile, Profiler, build_command, diff, parse_raw_csv, summarize
from avo.profiling import run as run_mod
from avo.profiling.asm import clean_sass, excerpt, ptxas_report
from avo.profiling.ncu import LAUNCH_COUNT, METRICS, SECTIONS, counters_to_request

FIXTURES = Path(__file__).parent / "ncu_fixtures"
CONFIG = "mha b4 s8192 d128 causal bf16"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def v4() -> Profile:
    return parse_raw_csv((FIXTURES / "v4_raw.csv").read_text(), CONFIG)


@pytest.fixture
def v3() -> Profile:
    return parse_raw_csv((FIXTURES / "v3_raw.csv").read_text(), CONFIG)


# ------------------------------------------------------------------- parse
def test_raw_csv_gives_one_kernel_per_row_and_skips_ncu_messages(v4):
    assert [k.name.split("<")[0] for k in v4.kernels] == ["_g_fwd_ws", "void at::native::vectorized_elementwise_kernel"]
    assert v4.kernels[1].name.endswith("std::array<char*, 1>)")  # commas inside a quoted field stay
    assert v4.device == "NVIDIA H100 80GB HBM3"
    main = v4.main()
    assert main.name == "_g_fwd_ws" and main.grid == "(64, 64, 1)" and main.block == "(384, 1, 1)"
    assert main.get("duration") == 2_951_232.0  # "2,951,232" nsecond
    assert main.get("registers") == 168 and main.get("smem_dynamic") == 180_224
    # the tensor pipe's first name reads "n/a" there, so its second one counts
    assert main.get("tensor") == pytest.approx(71.32) and main.get("wgmma_issue") == pytest.approx(4.46)
    assert main.get("mufu") == pytest.approx(24.51)
    assert main.get("memory_throughput") == pytest.approx(38.77) and main.get("occupancy") == pytest.approx(9.31)
    assert "selected" not in main.stalls and main.stalls["gmma"] == pytest.approx(1.87)
    assert main.stalls["not_selected"] == pytest.approx(0.16)
    assert v4.total_ns() == pytest.approx(2_964_000.0)


def test_the_h100_output_of_ncu_2025_3():
    """ncu's own raw CSV from the H100 run (benchmarks/results/h100-profile): 733 columns."""
    v4 = parse_raw_csv((FIXTURES / "h100_v0004_raw.csv").read_text(), CONFIG)
    v3 = parse_raw_csv((FIXTURES / "h100_v0003_raw.csv").read_text(), CONFIG)
    k = v4.main()
    assert [x.name for x in v4.kernels] == ["_g_fwd_ws"] and v4.device == "NVIDIA H100 80GB HBM3"
    assert k.get("duration") == 1_950_656.0 and k.get("registers") == 168 and k.get("block_size") == 384
    assert k.get("tensor") == pytest.approx(76.08) and k.get("wgmma_issue") == pytest.approx(4.76)
    assert k.get("mufu") == pytest.approx(39.27) and k.get("fma") == pytest.approx(15.52)
    assert all(k.get(m.key) is not None for m in METRICS), [m.key for m in METRICS if k.get(m.key) is None]
    assert len(k.stalls) == 18 and "selected" not in k.stalls and k.stalls["gmma"] == pytest.approx(0.07)
    assert v3.main().name == "_attn_fwd" and v3.main().get("registers") == 205
    delta = diff(v4, v3, "parent v3")
    assert "time (all kernels) 2.594 ms -> 1.951 ms (0.752x)" in delta and "tensor pipe 56.4% -> 76.1% (+19.7)" in delta


def test_profile_json_round_trip(v4):
    v4.ptxas_warnings = ["k: Potential Performance Loss: wgmma.mma_async instructions are serialized"]
    back = Profile.from_json(v4.to_json())
    assert back == v4 and back.main().stalls == v4.main().stalls


def test_units_are_scaled_when_ncu_did_not_print_base_units():
    text = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
            '"Device","CC","gpu__time_duration.sum","launch__shared_mem_per_block_dynamic"\n'
            '"","","","","","","","","","","","usecond","Kbyte"\n'
            '"0","1","python3","h","k","1","7","(128, 1, 1)","(8, 1, 1)","0","9.0","1,250.5","64"\n')
    k = parse_raw_csv(text).main()
    assert k.get("duration") == pytest.approx(1_250_500.0) and k.get("smem_dynamic") == pytest.approx(64_000.0)


def test_sampled_stalls_are_the_fallback_as_shares_of_samples():
    text = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
            '"Device","CC","smsp__pcsamp_warps_issue_stalled_barrier","smsp__pcsamp_warps_issue_stalled_wait",'
            '"smsp__pcsamp_warps_issue_stalled_selected"\n'
            '"","","","","","","","","","","","","",""\n'
            '"0","1","p","h","k","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","300","100","999"\n')
    k = parse_raw_csv(text).main()
    assert k.stall_unit == "% of samples" and k.stalls == {"barrier": 75.0, "wait": 25.0}


def test_missing_metrics_read_na_and_no_table_says_so():
    text = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
            '"Device","CC","gpu__time_duration.sum"\n"","","","","","","","","","","","nsecond"\n'
            '"0","1","p","h","k","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","5,000"\n')
    summary = summarize(parse_raw_csv(text, CONFIG))
    assert "k: 5.0 us" in summary and "pipe utilisation n/a" in summary and "n/a registers/thread" in summary
    empty = parse_raw_csv("==PROF== Connected to process 1\n==ERROR== something broke\n", CONFIG)
    assert empty.kernels == [] and "no kernel profiled" in summarize(empty) and "ncu reported no kernel" in empty.notes[0]


# --------------------------------------------------------------- summaries
def test_summary_is_a_few_lines_with_the_main_kernel_first(v4):
    v4.ptxas_warnings = ["_g_fwd_ws: ptxas info : (C7515) Potential Performance Loss: wgmma.mma_async serialized"]
    lines = summarize(v4).splitlines()
    assert len(lines) <= 8
    assert lines[0] == f"ncu profile on {CONFIG}, NVIDIA H100 80GB HBM3:"
    assert lines[1] == ("_g_fwd_ws: 2.951 ms, grid (64, 64, 1) x block (384, 1, 1), 168 registers/thread, "
                        "shared memory 176 KiB/block")
    assert lines[2] == ("  SM throughput 80.2%, memory throughput 38.8%, DRAM throughput 6.1%, tensor pipe 71.3%, "
                        "wgmma issue rate 4.5%, MUFU (XU pipe) 24.5%, FMA pipe 29.8%, ALU pipe 12.3%")
    assert lines[3].startswith("  issue slots busy 45.3%, achieved occupancy 9.3%, theoretical occupancy 9.4%")
    assert lines[4] == "  top stalls (warps per issued instruction): gmma 1.87, wait 0.64, barrier 0.41, math_pipe_throttle 0.35"
    assert lines[5] == "other kernels: void at::native::vectorized_elementwise_kernel<4, at::nativ… 12.8 us"
    assert lines[6].startswith("ptxas warnings (1): _g_fwd_ws: ptxas info : (C7515) Potential Performance Loss")


def test_diff_against_the_parent(v4, v3):
    v4.ptxas_warnings = ["_g_fwd_ws: wgmma serialized"]
    lines = diff(v4, v3, "parent v3").splitlines()
    assert len(lines) <= 10
    assert lines[0] == f"vs parent v3 on {CONFIG}: _g_fwd_ws (was _attn_fwd)"
    assert lines[1] == "  time (all kernels) 3.705 ms -> 2.964 ms (0.800x)"
    text = "\n".join(lines)
    assert "tensor pipe 58.1% -> 71.3% (+13.2)" in text and "wgmma issue rate 3.6% -> 4.5% (+0.8)" in text
    assert "MUFU (XU pipe) 20.1% -> 24.5% (+4.5)" in text
    assert "achieved occupancy 12.4% -> 9.3% (-3.1)" in text
    assert "registers/thread 255 -> 168" in text and "dynamic shared memory/block 96 KiB -> 176 KiB" in text
    assert "stalls: gmma 1.22 -> 1.87, wait 0.93 -> 0.64, barrier 0.63 -> 0.41" in text
    assert lines[-1] == "  ptxas warnings: 1 new (_g_fwd_ws: wgmma serialized), 0 gone"
    # the same profile against itself: nothing moved
    same = diff(v3, v3)
    assert "(1.000x)" in same and "within 0.5 points" in same and "registers" not in same


# ------------------------------------------------------------ command line
def test_command_profiles_only_the_marked_call_one_launch_per_kernel():
    argv = build_command("/opt/ncu", ["python", "-m", "avo.profiling.driver", "k.py", CONFIG, "out"],
                         metrics=["sm__a.sum", "smsp__b.ratio"], log_file="out/ncu.csv")
    assert argv[0] == "/opt/ncu" and argv[-6:] == ["python", "-m", "avo.profiling.driver", "k.py", CONFIG, "out"]
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--page"] == "raw" and "--csv" in argv and pairs["--print-units"] == "base"
    assert pairs["--profile-from-start"] == "off" and pairs["--launch-count"] == str(LAUNCH_COUNT)
    assert pairs["--replay-mode"] == "kernel" and pairs["--log-file"] == "out/ncu.csv"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--section"] == list(SECTIONS)
    assert pairs["--metrics"] == "sm__a.sum,smsp__b.ratio"
    default = build_command("ncu", ["p"])
    requested = dict(zip(default, default[1:]))["--metrics"].split(",")
    assert requested == counters_to_request() and "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active" in requested
    assert not any(m.startswith("launch__") for m in requested)  # LaunchStats brings those
    assert "--metrics" not in build_command("ncu", ["p"], metrics=[])


# ------------------------------------------------------------- availability
def test_without_ncu_the_answer_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(run_mod, "NCU_PLACES", ())
    text = Profiler().unavailable()
    assert text == "profile unavailable: ncu (Nsight Compute) is not on PATH here; use benchmark and compiler_stats"
    run = Profiler().profile("def attention(q, k, v, causal=False, sm_scale=None):\n    pass\n", CONFIG)
    assert not run.ok and run.error == text


@pytest.fixture
def ncu_dir():
    """A directory the sandbox's uid can reach (pytest's tmp_path lies under a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="avo-test-ncu-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def fake_ncu(directory: Path, known: list[str]) -> Path:
    """An `ncu` that answers --query-metrics with `known` and otherwise prints its
    argv and writes the v4 fixture to its --log-file (it never runs the program)."""
    path = directory / "ncu"
    path.write_text(textwrap.dedent(f"""\
        #!{sys.executable} -I
        import sys
        if "--query-metrics" in sys.argv:
            print("Device NVIDIA H100 80GB HBM3 (GH100)")
            for i in range(30):
                print(f"filler__metric_{{i}}  Counter  # filler")
            for name in {known!r}:
                print(name + "  Counter  # of something")
            sys.exit(0)
        if "--version" in sys.argv:
            print("NVIDIA (R) Nsight Compute Command Line Profiler\\nVersion 2099.1.0.0 (stand-in)")
            sys.exit(0)
        print("ARGV", sys.argv[1:])
        log = sys.argv[sys.argv.index("--log-file") + 1]
        open(log, "w").write(open({str(FIXTURES / 'v4_raw.csv')!r}).read())
        """))
    path.chmod(0o755)
    return path


def test_ncu_present_but_no_gpu_is_one_line(monkeypatch, ncu_dir):
    fake_ncu(ncu_dir, [])
    monkeypatch.setenv("PATH", f"{ncu_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(run_mod, "has_gpu", lambda: False)
    assert run_mod.find_ncu() == str(ncu_dir / "ncu")
    assert Profiler().unavailable() == ("profile unavailable: no CUDA GPU here (ncu needs one); "
                                        "use benchmark and compiler_stats")


def test_sandboxed_run_against_a_stand_in_ncu(ncu_dir, monkeypatch):
    known = ["sm__pipe_tensor_cycles_active", "sm__inst_executed_pipe_xu", "gpu__time_duration"]
    ncu = fake_ncu(ncu_dir, known)
    monkeypatch.setattr(run_mod, "_counters", {})
    source = (REPO / "kernel_src/attention/lineage/cuda/v0003/kernel.py").read_text()
    run = Profiler(ncu=str(ncu), gpu=True, timeout_s=60).profile(source, CONFIG)
    assert run.ok, (run.error, run.log_tail)
    assert run.profile.main().name == "_g_fwd_ws" and run.profile.config == CONFIG
    # the counters this ncu does not list were not asked for; the driver is ncu's program
    argv_line = next(ln for ln in run.log_tail.splitlines() if ln.startswith("ARGV"))
    assert "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active" in argv_line
    assert "sm__pipe_tensor_op_hmma_cycles_active" not in argv_line and "avo.profiling.driver" in argv_line
    assert run.raw_csv.startswith("==PROF==") and run.asm == []
    from avo.harness import sandbox

    assert run.box == sandbox.detect().level  # ncu and its program ran in the harness's box


def test_a_kernel_the_harness_would_reject_is_not_run(ncu_dir):
    ncu = fake_ncu(ncu_dir, [])
    bad = ("import torch, triton\n@triton.jit\ndef _k(x):\n    pass\n"
           "def attention(q, k, v, causal=False, sm_scale=None):\n"
           "    return torch.nn.functional.scaled_dot_product_attention(q, k, v)\n")
    run = Profiler(ncu=str(ncu), gpu=True).profile(bad, CONFIG)
    assert not run.ok and run.error.startswith("profile not run: the harness would reject it (line 6:")
    no_kernel = Profiler(ncu=str(ncu), gpu=True).profile("def attention(q, k, v):\n    return q\n", CONFIG)
    assert no_kernel.error == ("profile not run: no @triton.jit kernel: the work must be done by Triton kernels "
                               "the file defines")


def test_read_back_follows_no_symlink(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root's secret")
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "ncu.csv").symlink_to(secret)
    (work / "out" / "real.csv").write_text("data")
    (work / "linked").symlink_to(work / "out")
    assert run_mod._read_in(work, ("out", "ncu.csv"), 100) == ""
    assert run_mod._read_in(work, ("linked", "real.csv"), 100) == ""  # a symlinked directory too
    assert run_mod._read_in(work, ("out", "real.csv"), 100) == "data"


# ------------------------------------------------------------ compiled code
SASS = "\n".join([f"        /*{i:04x}*/   MOV R{i}, R{i} ;" for i in range(200)]
                 + [f"        /*{i:04x}*/   HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], R24 ;" for i in range(200, 210)]
                 + [f"        /*{i:04x}*/   MUFU.EX2 R{i}, R{i} ;" for i in range(210, 220)]
                 + [f"        /*{i:04x}*/   IADD3 R1, R1, 0x1, RZ ;" for i in range(220, 400)])


def test_excerpt_shows_the_hot_loop_or_the_searched_lines():
    hot = excerpt(SASS, "sass", lines=30)
    assert hot.startswith("lines ") and "20 such lines" in hot
    assert "HGMMA" in hot and "MUFU.EX2" in hot and len(hot.splitlines()) == 31
    found = excerpt(SASS, "sass", find="iadd3", lines=20)
    assert "180 lines contain 'iadd3', first at 221" in found and "IADD3" in found
    assert "does not occur" in excerpt(SASS, "sass", find="BAR.SYNC")
    assert len(excerpt(SASS, "sass", lines=5000).splitlines()) == 201  # at most 200 lines


def test_ptxas_report_and_clean_sass():
    log = ("ptxas info    : Compiling entry function '_g_fwd_ws' for 'sm_90a'\n"
           "ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized "
           "due to the presence of Extern calls in the function '_g_fwd_ws'.\n"
           "    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 168 registers, used 16 barriers\n")
    report = ptxas_report(log)
    assert report["registers"] == 168 and (report["spill_stores"], report["spill_loads"]) == (8, 12)
    assert report["warnings"] == ["ptxas info : (C7515) Potential Performance Loss: wgmma.mma_async instructions "
                                  "are serialized due to the presence of Extern calls in the function '_g_fwd_ws'."]
    raw = ("        /*0010*/                   MUFU.EX2 R7, R7 ;        /* 0x0000000700077308 */\n"
           "                                                            /* 0x000e700000000800 */\n")
    assert clean_sass(raw) == "        /*0010*/                   MUFU.EX2 R7, R7 ;"


@pytest.mark.slow
def test_compiled_code_without_a_gpu_in_the_sandbox():
    source = (REPO / "kernel_src/attention/lineage/cuda/v0003/kernel.py").read_text()
    run = Profiler().compile_asm(source)
    assert run.asm, (run.error, run.log_tail)
    entry = run.asm[0]
    assert entry["name"] == "_attn_fwd" and entry["arch"] == "sm_90a" and entry["registers"] > 0
    texts = run.texts[entry["tag"]]
    assert {"ttgir", "ptx", "sass", "ptxas"} <= set(texts)
    assert "HGMMA" in texts["sass"] and "wgmma.mma_async" in texts["ptx"] and "warp_group_dot" in texts["ttgir"]


def test_profile_example_writes_its_eight_files_and_renders_again(ncu_dir, tmp_path, monkeypatch):
    fake_ncu(ncu_dir, [])
    monkeypatch.setenv("PATH", f"{ncu_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(run_mod, "has_gpu", lambda: True)
    monkeypatch.setattr(run_mod, "_counters", {})
    spec = importlib.util.spec_from_file_location("profile_example", REPO / "benchmarks" / "profile_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["profile_example.py", "--out", str(out), "--budget", "120"])
    assert example.main() == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["run.log", "summary.txt", "v0003.asm.txt", "v0003.ncu.csv", "v0003.profile.json",
                     "v0004.asm.txt", "v0004.ncu.csv", "v0004.profile.json"]
    summary = (out / "summary.txt").read_text()
    assert "profiled in: the harness box" in summary and "== delta" in summary and "(1.000x)" in summary
    assert "profile_kernel's answer as the agent reads it" in summary and "ncu profile, program output (untrusted" in summary
    assert Profile.from_json((out / "v0004.profile.json").read_text()).main().name == "_g_fwd_ws"
    assert "Version 2099.1.0.0 (stand-in)" in (out / "run.log").read_text()
    (out / "summary.txt").unlink()
    monkeypatch.setattr(sys, "argv", ["profile_example.py", "--out", str(out), "--render"])
    assert example.main() == 0 and "== delta" in (out / "summary.txt").read_text()


def test_driver_calls_the_entry_as_the_problem_declares_it():
    from types import SimpleNamespace

    from avo.profiling.driver import entry_call, find_shape
    from avo.problem import load_problem

    seen = []
    problem = SimpleNamespace(
        SIGNATURE="rmsnorm(x, w, eps=1e-6)",
        draw_call=lambda shape, rng, vary, index: {"args": {"eps": 1e-5}, "judge_only": vary},
        inputs=lambda shape, device, seed, call: {"w": f"w@{device}", "x": f"x@{device}"})
    module = SimpleNamespace(rmsnorm=lambda *a, **kw: seen.append((a, kw)))
    entry_call(problem, module, shape=None)()
    assert seen == [(("x@cuda", "w@cuda"), {"eps": 1e-5})]
    attention = load_problem()
    assert find_shape(attention, CONFIG).causal and find_shape(attention, CONFIG).seqlen == 8192
