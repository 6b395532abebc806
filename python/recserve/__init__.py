"""recserve: a real-time recommendation engine for short-video feeds."""

from recserve import ann, mlp, simd
from recserve._core import CorruptFileError

__all__ = ["CorruptFileError", "ann", "mlp", "simd", "__version__"]
__version__ = "0.1.0"
