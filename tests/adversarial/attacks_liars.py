"""Lying-output attacks (class 3): the comparison runs on a Tensor subclass the candidate returned."""
from __future__ import annotations

# ------------------------------------------------------------------------------
# class 3: the comparison runs on an object the candidate returned
# ------------------------------------------------------------------------------
LIARS = {
    "liar_torch_function": ("returns zeros as a Tensor subclass whose __torch_function__ answers abs/sub "
                            "with zeros and isfinite with True", '''

class _Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        plain = [a.as_subclass(torch.Tensor) if isinstance(a, _Liar) else a for a in args]
        out = func(*plain, **(kwargs or {}))
        name = repr(func)
        if isinstance(out, torch.Tensor):
            if "abs" in name or "sub" in name:
                return torch.zeros_like(out)
            if "isfinite" in name or "isnan" in name or "isinf" in name:
                return torch.ones_like(out, dtype=torch.bool) if "isfinite" in name else torch.zeros_like(out)
            if out.dtype.is_floating_point:
                return out.as_subclass(_Liar)
        return out


def attention(q, k, v, causal=False, sm_scale=None):
    return torch.zeros_like(q).as_subclass(_Liar)
'''),
    "liar_methods": ("returns zeros as a Tensor subclass that overrides __sub__/sub/abs/norm/max/allclose "
                     "(the default __torch_function__ keeps the subclass through .to())", '''

class _Liar(torch.Tensor):
    def __sub__(self, other):
        return torch.zeros(self.shape, dtype=torch.float64)

    def sub(self, other, alpha=1):
        return torch.zeros(self.shape, dtype=torch.float64)

    def abs(self):
        return torch.zeros(self.shape, dtype=torch.float64)

    def norm(self, *args, **kwargs):
        return torch.zeros((), dtype=torch.float64)

    def allclose(self, *args, **kwargs):
        return True

    def equal(self, other):
        return True


def attention(q, k, v, causal=False, sm_scale=None):
    return torch.zeros_like(q).as_subclass(_Liar)
'''),
}
