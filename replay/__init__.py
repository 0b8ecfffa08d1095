"""pagereplay: replay Linux page-allocator traces through a model of the buddy allocator."""

from replay._numba_cache import configure as _configure_numba_cache

__version__ = "0.1.0"
_configure_numba_cache()
