"""Library compute attacks (class 5): products through library calls the denylist does not name."""
from __future__ import annotations

from tests.adversarial.attacks_base import BUILTINS

# ------------------------------------------------------------------------------
# class 5: library compute the denylist does not name
# ------------------------------------------------------------------------------
LIBRARY = {
    "embedding_bag_products": ("both products through torch.embedding_bag with per-sample weights "
                               "(aten::_embedding_bag*: not a denied name, output-sized writes only)", '''

def attention(q, k, v, causal=False, sm_scale=None):
    b, hq, s, d = q.shape
    group = hq // k.shape[1]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    out = torch.empty(q.shape, dtype=q.dtype)
    idx_qk, off_qk = torch.arange(d).repeat(s), torch.arange(0, s * d, d)  # bag i: sum_d q[i,d] K^T[d,:]
    idx_pv, off_pv = torch.arange(s).repeat(s), torch.arange(0, s * s, s)  # bag i: sum_j p[i,j] V[j,:]
    mask = torch.ones(s, s, dtype=torch.bool).triu(1)
    for bi in range(b):
        for h in range(hq):
            kt = k[bi, h // group].double().t().contiguous()
            scores = torch.embedding_bag(kt, idx_qk, off_qk, False, 0, False, q[bi, h].double().reshape(-1))[0]
            scores = scores * scale
            if causal:
                scores = scores.masked_fill(mask, -math.inf)
            p = (scores - scores.amax(-1, keepdim=True)).exp()
            p = p / p.sum(-1, keepdim=True)
            o = torch.embedding_bag(v[bi, h // group].double(), idx_pv, off_pv, False, 0, False, p.reshape(-1))[0]
            out[bi, h] = o.to(q.dtype)
    return out
'''),
    "numpy_products": ("both products in numpy through Tensor.numpy() and ndarray.dot; the only torch "
                       "ops are copies (no dispatch or profiler watch sees numpy's work)", '''

def attention(q, k, v, causal=False, sm_scale=None):
    b, hq, s, d = q.shape
    group = hq // k.shape[1]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    qn, kn, vn = (t.double().numpy() for t in (q, k, v))  # the only torch ops: copies
    pos = (qn[0, 0, :, 0] * 0 + 1).cumsum()  # 1..s, in numpy
    mask = pos[None, :] > pos[:, None]
    res = qn * 0
    for bi in range(b):
        for h in range(hq):
            scores = qn[bi, h].dot(kn[bi, h // group].T) * scale
            if causal:
                scores[mask] = -math.inf
            p = math.e ** (scores - scores.max(axis=-1, keepdims=True))
            res[bi, h] = (p / p.sum(axis=-1, keepdims=True)).dot(vn[bi, h // group])
    return torch.from_numpy(res).to(q.dtype)  # a copy
'''),
    "matmul_on_a_thread": ("torch.matmul and torch.softmax (names built at run time, reached with the real "
                           "getattr) on a thread joined before returning: the dispatch watch is "
                           "thread-local", BUILTINS + '''
_threading = _B["__import__"]("threading")
_mm = _B["getattr"](torch, "mat" + "mul")
_smax = _B["getattr"](torch, "soft" + "max")


def attention(q, k, v, causal=False, sm_scale=None):
    group = q.shape[1] // k.shape[1]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    box = []

    def work():
        kf = k.double().repeat_interleave(group, 1)
        vf = v.double().repeat_interleave(group, 1)
        scores = _mm(q.double(), kf.transpose(-1, -2)) * scale
        if causal:
            s = q.shape[2]
            scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), -math.inf)
        box.append(_mm(_smax(scores, -1), vf).to(q.dtype))

    t = _threading.Thread(target=work)
    t.start()
    t.join()
    return box[0]
'''),
}
