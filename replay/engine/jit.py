"""The engine's `njit`: numba's, compiling one version of a function per kind of argument.

numba compiles a jitted function once per distinct tuple of argument types it is called with
from other compiled code, and a call site's integers come in many types: an int8 read from the
page map, an int64 index, the literal 1 or True. The engine's small helpers (`add_to_free_list`,
`__free_one_page`, `emit`...) were compiled up to twelve times each, a quarter of the first
run's compile time. Here a compiled caller's integer arguments are widened to int64 and literal
values forgotten before numba picks or compiles the callee's version; the caller converts its
values at the call (a widening, which keeps every value). Calls from Python are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
from numba.core import types


def _widened(t: types.Type) -> types.Type:
    t = types.unliteral(t)
    if isinstance(t, types.Integer) and t.bitwidth < 64:
        return types.int64
    return t


def njit(*args: Any, **options: Any) -> Any:
    """numba.njit, whose compiled callers share one version per argument kind."""
    if args and callable(args[0]):
        return _widening(numba.njit(**options)(args[0]))
    return lambda fn: _widening(numba.njit(*args, **options)(fn))


def _widening(dispatcher: Any) -> Any:
    base: Callable = dispatcher.get_call_template

    def get_call_template(args, kws):  # noqa: ANN001, ANN202 - numba's signature
        return base(tuple(_widened(a) for a in args),
                    {k: _widened(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher
