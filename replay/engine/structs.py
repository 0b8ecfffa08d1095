"""Named groups of arrays (State, SlowState, Emitter) as compiled code takes them: one pointer.

In Python these are NamedTuples of numpy arrays. Passed as tuples, numba flattens every array
(pointers, shape, strides) into each compiled function's arguments: some 250 values per call for
State, in each of the engine's ~200 compiled functions, which made the first compile take
minutes. `ArrayStruct` gives such a tuple a twin built once per tuple: a numba StructRef holding
the very same arrays (no copy: writes in compiled code land in the tuple's arrays). Compiled
code takes a plain pointer to the twin's fields (`ArraysPtr`) and reads the same attribute names
as Python does on the tuple (`st.pg_state`); Python keeps the NamedTuple (`_replace`, pickling).

The pointer is borrowed for the call: the tuple holds the twin and the twin holds the arrays,
so nothing is reference-counted in the engine, which compiles without numba's runtime
(`_nrt=False`). Only the twin's constructor, compiled with the runtime, counts references (the
twin owns its arrays, and frees them when the tuple is gone).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numba
from numba.core import cgutils, imputils, types
from numba.core.datamodel import models
from numba.core.extending import (
    NativeValue,
    infer_getattr,
    lower_getattr_generic,
    lower_setattr_generic,
    register_model,
    typeof_impl,
    unbox,
)
from numba.core.typing.templates import AttributeTemplate
from numba.experimental import structref


class ArraysRef(types.StructRef):
    """A StructRef type whose fields are arrays (typed without literal values)."""

    def preprocess_fields(self, fields):  # noqa: ANN001, ANN201 - numba's signature
        return tuple((name, types.unliteral(t)) for name, t in fields)


_REF_TYPES: dict[type, type] = {}  # NamedTuple fields class -> its ArraysRef subclass


class ArraysPtr(types.Type):
    """What compiled code takes: a plain pointer to an ArraysRef's fields, borrowed from the
    Python tuple for the call. Not the StructRef itself: numba's StructRef unboxing acquires
    its MemInfo, and with the runtime off nothing releases it, which kept every struct (and its
    arrays) alive for good."""

    def __init__(self, ref_type: ArraysRef) -> None:
        self.ref_type = ref_type
        super().__init__(name=f"Ptr[{ref_type}]")

    @property
    def field_dict(self) -> dict:
        return self.ref_type.field_dict

    def get_data_type(self) -> types.Type:
        return self.ref_type.get_data_type()


@register_model(ArraysPtr)
class _ArraysPtrModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type) -> None:  # noqa: ANN001
        super().__init__(dmm, fe_type, cgutils.voidptr_t)


@unbox(ArraysPtr)
def _unbox_arrays_ptr(typ, obj, c):  # noqa: ANN001, ANN202 - numba codegen
    addr = c.pyapi.object_getattr_string(obj, "_payload_address")
    ptr = c.pyapi.long_as_voidptr(addr)
    c.pyapi.decref(addr)
    return NativeValue(ptr, is_error=c.pyapi.c_api_error())


def _typed_fields(key: type) -> None:
    """Attribute typing for `key`'s instances: each field has its array type."""

    @infer_getattr
    class _Fields(AttributeTemplate):
        def generic_resolve(self, typ, attr):  # noqa: ANN001, ANN202
            return typ.field_dict.get(attr)

    _Fields.key = key


_typed_fields(ArraysPtr)


@lower_getattr_generic(ArraysPtr)
def _ptr_getattr(context, builder, typ, val, attr):  # noqa: ANN001, ANN202 - numba codegen
    payload_type = typ.get_data_type()
    llty = context.data_model_manager[payload_type].get_value_type()
    payload = cgutils.create_struct_proxy(payload_type)(
        context, builder, ref=builder.bitcast(val, llty.as_pointer()))
    return imputils.impl_ret_untracked(context, builder, typ.field_dict[attr],
                                       getattr(payload, attr))


def _payload(context, builder, typ, val):  # noqa: ANN001, ANN202 - numba codegen
    """A StructRef's fields, through its MemInfo (the constructor's, with the runtime)."""
    ref = cgutils.create_struct_proxy(typ)(context, builder, value=val)
    data = context.nrt.meminfo_data(builder, ref.meminfo)
    payload_type = typ.get_data_type()
    llty = context.data_model_manager[payload_type].get_value_type()
    return cgutils.create_struct_proxy(payload_type)(
        context, builder, ref=builder.bitcast(data, llty.as_pointer()))


def register_struct(fields: type, proxy: type):
    """Class decorator for the ArraysRef subclass that holds NamedTuples of `fields` for
    compiled code: its data model, the field stores of its constructor, and `proxy` (a
    structref.StructRefProxy subclass) as the Python class its constructor returns."""

    def register(ref_type: type) -> type:
        register_model(ref_type)(models.StructRefModel)
        _typed_fields(ref_type)

        @lower_setattr_generic(ref_type)
        def _setattr(context, builder, sig, args, attr):  # noqa: ANN001, ANN202
            inst_type, val_type = sig.args
            instance, val = args
            payload = _payload(context, builder, inst_type, instance)
            value = context.cast(builder, val, val_type, inst_type.field_dict[attr])
            old = getattr(payload, attr)
            context.nrt.incref(builder, val_type, value)
            context.nrt.decref(builder, val_type, old)
            setattr(payload, attr, value)

        structref.define_constructor(proxy, ref_type, list(fields._fields))
        structref.define_boxing(ref_type, proxy)
        _REF_TYPES[fields] = ref_type
        return ref_type

    return register


class ArrayStruct:
    """Mixin for a NamedTuple of arrays: numba types it as a pointer to its StructRef twin's
    fields, the twin built on first use and kept with the tuple."""

    _new_ref: ClassVar[Any]

    @property
    def _payload_address(self) -> int:
        d = self.__dict__
        ref = d.get("_ref")
        if ref is None:
            ref = d["_ref"] = type(self)._new_ref(*self)
        return ref._meminfo.data

    def numba_type(self) -> types.Type:
        """The pointer's type; the twin is built here, in typing, so that unboxing (inside a
        compiled function's entry) only reads its address."""
        d = self.__dict__
        t = d.get("_numba_type")
        if t is None:
            self._payload_address  # noqa: B018 - builds the twin
            ref_type = next(_REF_TYPES[c] for c in type(self).__mro__ if c in _REF_TYPES)
            t = d["_numba_type"] = ArraysPtr(ref_type(
                [(name, numba.typeof(a)) for name, a in zip(self._fields, self, strict=True)]))
        return t

    def __reduce__(self) -> tuple:
        return (type(self), tuple(self))  # the arrays only (the compiled twin is rebuilt)


@typeof_impl.register(ArrayStruct)
def _typeof_array_struct(val: ArrayStruct, c) -> types.Type:  # noqa: ANN001
    return val.numba_type()
