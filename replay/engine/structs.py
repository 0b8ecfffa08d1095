"""Named groups of arrays (State, SlowState, Emitter) as compiled code takes them: one pointer.

In Python these are NamedTuples of numpy arrays. Passed as tuples, numba flattens every array
(pointer, shape, strides...) into each compiled function's arguments: some 250 values per call
for State, in all of the engine's ~200 functions, which made the first compile take minutes.
`ArrayStruct` gives the tuple a numba StructRef twin holding the very same arrays (no copy:
writes in compiled code land in the tuple's arrays), built once per tuple and passed as one
pointer. Python code keeps the NamedTuple (`st.pg_state`, `_replace`, pickling); compiled code
reads the same attribute names.

A struct kind is declared as::

    @structref.register
    class StateRef(ArraysRef): ...
    class _StateProxy(structref.StructRefProxy): ...
    register_struct(StateRef, _StateProxy, _StateFields)

    @njit(cache=True)
    def _new_state_ref(*arrays): return _StateProxy(*arrays)

    class State(ArrayStruct, _StateFields):
        _new_ref = staticmethod(_new_state_ref)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numba
from numba.core import types
from numba.experimental import structref
from numba.extending import typeof_impl


class ArraysRef(types.StructRef):
    """A StructRef type whose fields are arrays (typed without literal values)."""

    def preprocess_fields(self, fields):  # noqa: ANN001, ANN201 - numba's signature
        return tuple((name, types.unliteral(t)) for name, t in fields)


_REF_TYPES: dict[type, type] = {}  # NamedTuple fields class -> its ArraysRef subclass


def register_struct(ref_type: type, proxy: type, fields: type) -> None:
    """Give compiled code a constructor for `proxy` and its boxing, and record that tuples of
    `fields` type as `ref_type`."""
    structref.define_constructor(proxy, ref_type, list(fields._fields))
    structref.define_boxing(ref_type, proxy)
    _REF_TYPES[fields] = ref_type


class ArrayStruct:
    """Mixin for a NamedTuple of arrays: numba sees it as its StructRef twin (`_meminfo` is
    what numba's StructRef unboxing reads), built on first use and kept with the tuple."""

    _new_ref: ClassVar[Any]

    @property
    def _meminfo(self) -> Any:
        d = self.__dict__
        ref = d.get("_ref")
        if ref is None:
            ref = d["_ref"] = type(self)._new_ref(*self)
        return ref._meminfo

    def numba_type(self) -> types.Type:
        d = self.__dict__
        t = d.get("_numba_type")
        if t is None:
            ref_type = next(_REF_TYPES[c] for c in type(self).__mro__ if c in _REF_TYPES)
            t = d["_numba_type"] = ref_type(
                [(name, numba.typeof(a)) for name, a in zip(self._fields, self, strict=True)])
        return t

    def __reduce__(self) -> tuple:
        return (type(self), tuple(self))  # the arrays only (the compiled twin is rebuilt)

    def __copy__(self):  # noqa: ANN204
        return type(self)(*self)


@typeof_impl.register(ArrayStruct)
def _typeof_array_struct(val: ArrayStruct, c) -> types.Type:  # noqa: ANN001
    return val.numba_type()
