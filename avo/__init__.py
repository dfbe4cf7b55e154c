"""avo: agentic variation operators for evolutionary search over GPU kernels."""

__version__ = "0.1.0"
