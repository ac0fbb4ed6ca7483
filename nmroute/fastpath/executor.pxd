from libc.stdint cimport uint32_t, uint64_t

from nmroute.fastpath.batch cimport Batch, Desc, BATCH_MAX
from nmroute.fastpath.pool cimport Pool
from nmroute.fastpath.ring cimport NmRing

cdef enum:
    K_ELEMENT = 0
    K_PORT = 1      # the tx side of a port

# Element counter block: in, drops by reason, out by output, own counters.
cdef enum:
    E_IN = 0
    E_DROPS = 1


ctypedef struct Node:
    void* obj            # the Element or Port (kept alive by Executor.objs)
    int kind
    int n_out
    bint fanout
    bint copy            # port on another pool: copy frames instead of swapping
    int* out             # node index per output
    uint32_t* cnt        # scratch: packets per output
    Desc* scratch        # n_out * BATCH_MAX descriptors for scattering
    uint64_t* ctr
    NmRing* tx           # ports: the tx ring


ctypedef struct Input:
    void* port
    NmRing* rx
    int first            # node the port's packets go to
    bint external        # not a pipe: the run ends when these are exhausted
    bint done
    int n_reach
    int* reach           # tx port nodes the input can reach...
    int* mult            # ...and along how many paths (room needed per packet)


cdef class Executor:
    cdef Pool pool
    cdef list objs
    cdef Node* nodes
    cdef int n_nodes
    cdef Input* inputs
    cdef int n_inputs
    cdef uint32_t batch
    cdef Desc descs[BATCH_MAX]
    cdef Desc blank          # a fresh descriptor: nothing parsed, no output yet
    cdef public bint stop
    cdef readonly uint64_t rounds
    cdef readonly uint64_t idle_rounds

    cdef void push(self, int ni, Batch* b) noexcept nogil
    cdef void scatter(self, Node* node, Batch* b) noexcept nogil
    cdef void fanout(self, Node* node, Batch* b) noexcept nogil
    cdef void enqueue(self, Node* node, Batch* b) noexcept nogil
    cdef uint64_t pull(self, Input* inp) noexcept nogil
    cdef uint64_t sync_tx(self) noexcept nogil
    cdef void loop(self) noexcept nogil
