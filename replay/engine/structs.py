"""Named groups of arrays (State, SlowState, Emitter) as compiled code takes them: one pointer.

In Python these are NamedTuples of numpy arrays. Passed as tuples, numba flattens every array
(pointers, shape, strides) into each compiled function's arguments: some 250 values per call for
State, in each of the engine's ~200 compiled functions, which made the first compile take
minutes. `ArrayStruct` gives such a tuple a twin that compiled code takes as one pointer: a numba
StructRef holding the very same arrays (no copy: writes in compiled code land in the tuple's
arrays), built once per tuple. Python code keeps the NamedTuple (`st.pg_state`, `_replace`,
pickling); compiled code reads the same attribute names.

Reading a field costs no reference counting: the engine compiles without numba's runtime
(`_nrt=False`) and the tuple keeps the arrays alive while compiled code runs, so the attribute
loads below take the payload pointer straight from the StructRef's MemInfo (what
NRT_MemInfo_data_fast does) and hand the array over untracked. Only the constructor, compiled
with the runtime, counts references.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numba
from llvmlite import ir
from numba.core import cgutils, imputils, types
from numba.core.datamodel import models
from numba.core.extending import (
    infer_getattr,
    lower_getattr_generic,
    lower_setattr_generic,
    register_model,
    typeof_impl,
)
from numba.core.typing.templates import AttributeTemplate


class ArraysRef(types.StructRef):
    """A StructRef type whose fields are arrays (typed without literal values)."""

    def preprocess_fields(self, fields):  # noqa: ANN001, ANN201 - numba's signature
        return tuple((name, types.unliteral(t)) for name, t in fields)


_REF_TYPES: dict[type, type] = {}  # NamedTuple fields class -> its ArraysRef subclass

# struct MemInfo (numba/core/runtime/nrt.cpp): refct, dtor, dtor_info, data, ...
_MEMINFO = ir.LiteralStructType([cgutils.intp_t, cgutils.voidptr_t, cgutils.voidptr_t,
                                 cgutils.voidptr_t])


def _payload(context, builder, typ, val):  # noqa: ANN001, ANN202 - numba codegen
    """The StructRef's payload struct (its fields), read through the MemInfo's data pointer."""
    ref = cgutils.create_struct_proxy(typ)(context, builder, value=val)
    meminfo = builder.bitcast(ref.meminfo, _MEMINFO.as_pointer())
    data = builder.load(cgutils.gep_inbounds(builder, meminfo, 0, 3))
    payload_type = typ.get_data_type()
    llty = context.data_model_manager[payload_type].get_value_type()
    return cgutils.create_struct_proxy(payload_type)(
        context, builder, ref=builder.bitcast(data, llty.as_pointer()))


def register_struct(fields: type):
    """Class decorator for the ArraysRef subclass that stands for NamedTuples of `fields`:
    its data model, its attributes (read without reference counting) and the typeof of the
    tuples. The proxy's constructor and boxing come from numba.experimental.structref."""

    def register(ref_type: type) -> type:
        register_model(ref_type)(models.StructRefModel)

        @infer_getattr
        class _Attributes(AttributeTemplate):
            key = ref_type

            def generic_resolve(self, typ, attr):  # noqa: ANN001, ANN202
                return typ.field_dict.get(attr)

        @lower_getattr_generic(ref_type)
        def _getattr(context, builder, typ, val, attr):  # noqa: ANN001, ANN202
            value = getattr(_payload(context, builder, typ, val), attr)
            return imputils.impl_ret_untracked(context, builder, typ.field_dict[attr], value)

        @lower_setattr_generic(ref_type)
        def _setattr(context, builder, sig, args, attr):  # noqa: ANN001, ANN202
            # the constructor's only (compiled with the runtime)
            inst_type, val_type = sig.args
            instance, val = args
            payload = _payload(context, builder, inst_type, instance)
            value = context.cast(builder, val, val_type, inst_type.field_dict[attr])
            old = getattr(payload, attr)
            context.nrt.incref(builder, val_type, value)
            context.nrt.decref(builder, val_type, old)
            setattr(payload, attr, value)

        _REF_TYPES[fields] = ref_type
        return ref_type

    return register


class ArrayStruct:
    """Mixin for a NamedTuple of arrays: numba types it as its ArraysRef twin and unboxes it
    through `_meminfo` (what structref's unboxing reads), built on first use and kept with the
    tuple."""

    _new_ref: ClassVar[Any]

    @property
    def _meminfo(self) -> Any:
        d = self.__dict__
        ref = d.get("_ref")
        if ref is None:
            ref = d["_ref"] = type(self)._new_ref(*self)
        return ref._meminfo

    def numba_type(self) -> types.Type:
        """The twin's type; the twin is built here, in typing, so that unboxing (inside a
        compiled function's entry) only reads it."""
        d = self.__dict__
        t = d.get("_numba_type")
        if t is None:
            self._meminfo  # noqa: B018 - builds the twin
            ref_type = next(_REF_TYPES[c] for c in type(self).__mro__ if c in _REF_TYPES)
            t = d["_numba_type"] = ref_type(
                [(name, numba.typeof(a)) for name, a in zip(self._fields, self, strict=True)])
        return t

    def __reduce__(self) -> tuple:
        return (type(self), tuple(self))  # the arrays only (the compiled twin is rebuilt)


@typeof_impl.register(ArrayStruct)
def _typeof_array_struct(val: ArrayStruct, c) -> types.Type:  # noqa: ANN001
    return val.numba_type()
