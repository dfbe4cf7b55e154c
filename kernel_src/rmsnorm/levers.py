"""What is known about RMSNorm's levers (a memory-bound row reduction): one table, read
by the heuristic operator (a knob's expected effect, why, a prior log-ratio) and by the
supervisor's rules (the direction to give while the attempts log shows a lever
untried). A lever named like a knob of the kernels is that knob; others are
techniques without one. Priors are small: nothing here was measured on this problem
yet, and the measured effects of past attempts replace them as they come in.
"""

LEVERS = [
    {"name": "ONE_PASS", "keywords": ("one pass", "one_pass", "single pass", "registers", "read once"),
     "up": "a row that fits one tile is read once and kept in registers", "down": "two passes over x (simpler)",
     "why": "RMSNorm moves 2 bytes in and 2 out per element and does 4 FLOPs: its speed is bandwidth. Reading x "
            "twice costs up to half again the traffic when the second read misses L2.",
     "prior_up": 0.03, "prior_down": -0.02,
     "direction": "read each row once: keep it in registers between the sum of squares and the scaling"},
    {"name": "BLOCK_N", "keywords": ("block_n", "columns", "column tile", "vector"),
     "up": "fewer loop steps per row; wider vector loads", "down": "fewer registers per thread; more rows in flight",
     "why": "Each step loads BLOCK_N columns of BLOCK_M rows; a tile as wide as the row makes one pass possible, "
            "too wide wastes masked lanes on short rows.", "prior_up": 0.01, "prior_down": -0.01,
     "direction": "match BLOCK_N to the row width (the next power of two of N) so a row is one tile"},
    {"name": "BLOCK_M", "keywords": ("block_m", "rows per program", "row block"),
     "up": "more rows per program: w loaded once for several rows", "down": "more programs: better balance on short grids",
     "why": "With 32k rows there are programs enough at any BLOCK_M; several rows per program reuse w and its "
            "address arithmetic.", "prior_up": 0.0, "prior_down": 0.0,
     "direction": "several rows per program for narrow rows (N <= 2048) so each program moves enough bytes"},
    {"name": "NUM_WARPS", "keywords": ("warps", "num_warps"),
     "up": "more threads per row: more bytes in flight", "down": "fewer threads: less reduction overhead",
     "why": "A bandwidth-bound kernel needs enough loads in flight per SM; the cross-warp reduction of the sum of "
            "squares costs a shared-memory round trip.", "prior_up": 0.01, "prior_down": -0.01,
     "direction": "scale num_warps with the row width (about one warp per 256-512 columns)"},
    {"name": "PERSISTENT", "keywords": ("persistent",),
     "direction": "a persistent grid: one program per SM looping over rows, w kept in registers across rows"},
    {"name": "EVICTION", "keywords": ("eviction", "cache hint", "evict"),
     "direction": "cache hints: x and y streamed once (eviction_policy='evict_first'), w kept ('evict_last')"},
]
