"""recserve: a real-time recommendation engine for short-video feeds."""

from recserve import ann, embed, mlp, simd
from recserve._core import CorruptFileError

__all__ = ["CorruptFileError", "ann", "embed", "mlp", "simd", "__version__"]
__version__ = "0.1.0"
