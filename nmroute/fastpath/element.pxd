from libc.stdint cimport uint64_t

from nmroute.fastpath.batch cimport Batch

cdef enum:
    PER_PACKET = -1    # process() result: read each packet's `out`


cdef class Element:
    """The base of every element. A subclass overrides process().

    process() runs without the GIL on a whole batch. It either returns the
    output index that every packet of the batch takes, or PER_PACKET after
    setting each descriptor's `out` (an output index, or OUT_DROP with a
    reason in `drop`; see batch.drop_pkt). It never moves packets itself:
    the executor scatters the batch and counts in/out/drops.
    """
    cdef readonly str name
    cdef readonly dict params
    cdef readonly tuple output_names   # OUTPUTS, or outputs(params)
    # The run's shared tables (lib/tables.py): where configure() gets a
    # table it shares with other elements.
    cdef readonly object tables
    # Element-specific counters (COUNTERS), in shared memory once running.
    cdef uint64_t* stats
    cdef uint64_t* _own_stats

    cdef int process(self, Batch* b) noexcept nogil
