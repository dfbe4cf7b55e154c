"""What is known about attention's levers on Hopper: one table, read by the heuristic
operator (a knob's expected effect up/down, why, and a prior log-ratio) and by the
supervisor's rules (the direction to give while the attempts log shows a lever
untried). knowledge_base/ explains each lever at length. A lever named like a knob
of the kernels (BLOCK_M, USE_TMA) is that knob; others are techniques without one.

keywords: words that mark an attempt (its technique name) or a direction as being
about this lever. Plain data: loaded by avo.problem.levers() next to problem.py.
"""

LEVERS = [
    {"name": "CAUSAL_SPLIT",
     "keywords": ("causal split", "causal loop", "causal_split", "causal-split", "causal-loop-split", "loop split",
                  "diagonal"),
     "up": "causal: unmasked tiles skip the mask; only the diagonal pays for it", "down": "one loop: simpler code",
     "why": "Splitting the causal loop into off-diagonal (no mask) and diagonal tiles removes the compare/select "
            "from most tiles.", "prior_up": 0.04, "prior_down": -0.02,
     "direction": "split the causal key loop into unmasked full tiles and one masked diagonal tile (causal configs)"},
    {"name": "USE_TMA", "keywords": ("tma", "tensor descriptor", "descriptor"),
     "up": "K/V tiles via TMA descriptors: fewer address instructions, async copies", "down": "plain pointer loads",
     "why": "Hopper's Tensor Memory Accelerator moves tiles with one instruction; measured here: TMA + causal split "
            "reached 0.82-0.94x cuDNN vs 0.72x.", "prior_up": 0.04, "prior_down": -0.02,
     "direction": "load K and V through TMA tensor descriptors (tl.make_tensor_descriptor) instead of pointer tiles"},
    {"name": "GQA_PACK", "keywords": ("gqa", "head packing", "pack"),
     "up": "GQA: query heads sharing a KV head share one K/V load", "down": "one query head per program",
     "why": "Packing the query heads of a group into one tile loads each K/V tile once per group instead of once "
            "per query head.", "prior_up": 0.03, "prior_down": -0.02,
     "direction": "GQA head packing: process the query heads that share a KV head in one program so K/V load once"},
    {"name": "LAZY_RESCALE", "keywords": ("lazy", "rescal", "threshold"),
     "up": "skip rescaling O unless the row max grows past a threshold", "down": "rescale on every tile",
     "why": "FlashAttention-4's lazy rescaling: most tiles do not move the running max enough to matter, so the "
            "correction is skipped.", "prior_up": 0.02, "prior_down": -0.01,
     "direction": "lazy rescaling: rescale acc only when the row max grows by more than a threshold (log2 8)"},
    {"name": "PERSISTENT", "keywords": ("persistent",),
     "direction": "a persistent grid: one program per SM looping over tiles, longest (causal) tiles first"},
    {"name": "WARP_SPECIALIZE", "keywords": ("warp special", "warp_specialize", "warp-special", "ping-pong", "pingpong"),
     "up": "producer/consumer warps: loads overlap softmax and matmuls", "down": "uniform warps",
     "why": "tl.range(..., warp_specialize=True) lets the compiler split loads from compute (FA3's scheme); it may "
            "fail to compile with some layouts.", "prior_up": 0.03, "prior_down": -0.01,
     "direction": "warp specialization: tl.range(..., warp_specialize=True) on the key loop (non-causal first)"},
    {"name": "NUM_STAGES", "keywords": ("stages", "pipelin"),
     "up": "deeper software pipeline: K/V loads overlap the matmuls", "down": "less shared memory; room for larger tiles",
     "why": "cp.async / TMA pipelining hides global-memory latency; each stage holds one K and one V tile in shared "
            "memory.", "prior_up": 0.01, "prior_down": -0.01,
     "direction": "deeper software pipelining of the K/V loads (num_stages 3-4 with BLOCK_N 64)"},
    {"name": "TILES", "keywords": ("block_n", "block_m", "tile"),
     "direction": "retune BLOCK_M/BLOCK_N/num_warps jointly per head dim and causal mode"},
    {"name": "EXP2", "keywords": ("exp2", "fma", "scale"),
     "direction": "fold sm_scale*log2(e) into one FMA before exp2 and keep the max in base 2"},
    {"name": "BLOCK_M", "keywords": ("block_m", "query tile", "taller tile"),
     "up": "fewer K/V reloads per query row; more registers per thread",
     "down": "more programs in flight for short sequences; fewer registers",
     "why": "Each program streams all of K/V once per BLOCK_M query rows: a taller tile halves K/V traffic, but the "
            "fp32 accumulator (BLOCK_M x HEAD_DIM) must fit in registers.", "prior_up": 0.01, "prior_down": -0.01},
    {"name": "BLOCK_N", "keywords": ("block_n", "key tile", "kv tile"),
     "up": "fewer loop iterations and softmax corrections; larger matmuls",
     "down": "less shared memory per stage; deeper pipelines fit",
     "why": "Wider key tiles amortise the online-softmax rescale over more columns and feed larger wgmma "
            "instructions; on H100 the best plain Triton configs use 128x128.", "prior_up": 0.03, "prior_down": -0.01},
    {"name": "NUM_WARPS", "keywords": ("warps", "num_warps"),
     "up": "more warps to hide latency; fewer registers each",
     "down": "more registers per thread for the accumulator; fewer barriers",
     "why": "With BLOCK_M=128 one warpgroup (4 warps) holds the accumulator in registers without spills; 8 warps "
            "help taller tiles.", "prior_up": 0.0, "prior_down": 0.02},
]
