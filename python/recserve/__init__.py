"""recserve: a real-time recommendation engine for short-video feeds."""

from recserve import ann, embed, mlp, profiles, simd
from recserve._core import CorruptFileError

__all__ = ["CorruptFileError", "ann", "embed", "mlp", "profiles", "simd", "__version__"]
__version__ = "0.1.0"
