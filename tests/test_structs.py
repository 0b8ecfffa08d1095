"""State, SlowState and Emitter reach compiled code as one pointer over the tuple's own arrays."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
from engine_helpers import MOVABLE, one_zone_state, put_free
from numba import njit

from replay.engine import buddy
from replay.engine.policy import new_emitter
from replay.engine.slow_state import SlowState, slow_state_for
from replay.engine.state import State, StateRef, copy_state


@njit(_nrt=False)
def _touch(st, sp, out, pfn):
    """Write through all three structs; read back a field of each."""
    st.pg_warm[pfn] = 7
    sp.vm[0] += 1
    out.n[0] += 2
    return st.pg_state.shape[0] + sp.vm[0] + out.n[0]


def test_compiled_code_writes_the_tuples_own_arrays():
    st = one_zone_state(1024)
    sp = slow_state_for(st)
    out = new_emitter(16)
    out.n[:] = 0
    assert _touch(st, sp, out, 5) == 1024 + 1 + 2
    assert st.pg_warm[5] == 7 and sp.vm[0] == 1 and out.n[0] == 2
    assert isinstance(st.numba_type().ref_type, StateRef)
    # compiled calls borrow the twin: no reference is left behind (the arrays can be freed)
    assert st.__dict__["_ref"]._meminfo.refcount == 1
    # a replaced array is seen by the new tuple only
    st2 = st._replace(pg_warm=np.zeros_like(st.pg_warm))
    assert type(st2) is State
    _touch(st2, sp, out, 6)
    assert st2.pg_warm[6] == 7 and st.pg_warm[6] == 0


def test_the_engine_sees_the_same_lists_as_python():
    st = one_zone_state(4096)
    put_free(st, 512, 9, MOVABLE)
    assert buddy.find_free_block(st, 700) == 512
    twin = copy_state(st)
    assert type(twin) is State and buddy.find_free_block(twin, 700) == 512
    twin.pg_state[512] = 0  # the copy has its own arrays
    assert buddy.find_free_block(st, 700) == 512 and buddy.find_free_block(twin, 700) < 0


def test_pickle_and_copy_keep_the_arrays_not_the_twin():
    st = one_zone_state(1024)
    put_free(st, 0, 9, MOVABLE)
    assert buddy.find_free_block(st, 3) == 0  # the compiled twin exists now
    for back in (pickle.loads(pickle.dumps(st)), copy.copy(st)):
        assert type(back) is State and "_ref" not in back.__dict__
        assert all(np.array_equal(a, b) for a, b in zip(st, back, strict=True))
        assert buddy.find_free_block(back, 3) == 0
    sp = pickle.loads(pickle.dumps(slow_state_for(st)))
    assert type(sp) is SlowState


def test_threads_share_one_state():
    st = one_zone_state(4096)
    put_free(st, 1024, 9, MOVABLE)
    got: list[int] = []

    def look() -> None:
        got.extend(buddy.find_free_block(st, 1024 + k) for k in range(200))

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [1024] * 800
