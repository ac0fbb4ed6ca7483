# Classic BPF: a tcpdump expression compiled once by libpcap at configure
# time (BpfProgram.compile), decoded into our own op form, run per packet by
# our own interpreter (bpf_run), which never calls libpcap and reads nothing
# past buflen.
from libc.stdint cimport uint16_t, uint32_t, uint8_t

# One decoded instruction: op is bpf.pyx's dense op enum (a libpcap
# instruction, or a fused run of two or three); jt/jf are absolute indexes
# in the program (JA: jt); k is the instruction's k (fused: the load's
# offset), m a second operand (a mask, or the indexed load's offset after
# an MSH), v the value compared. flags: J_T_NEXT / J_F_NEXT (that target
# is the next op), F_ZERO_MEM (first op: zero scratch memory).
ctypedef struct BpfOp:
    uint16_t op
    uint16_t jt
    uint16_t jf
    uint16_t flags
    uint32_t k
    uint32_t m
    uint32_t v


# The program's return value (0: no match; tcpdump keeps the packet when
# non-zero). prog must come from BpfProgram (validated: every jump lands
# inside it and it cannot run off its end). A load past buflen returns 0, as
# in libpcap's bpf_filter. wirelen is what `len` loads (the frame's length
# on the wire); buflen the bytes present at pkt.
cdef uint32_t bpf_run(const BpfOp* prog, const uint8_t* pkt, uint32_t wirelen,
                      uint32_t buflen) noexcept nogil


cdef class BpfProgram:
    cdef BpfOp* ops
    cdef readonly uint32_t n
    cdef readonly str expr
    cdef list original
    cdef list decoded
