"""recserve: a real-time recommendation engine for short-video feeds."""

from recserve import ann, simd

__all__ = ["ann", "simd", "__version__"]
__version__ = "0.1.0"
