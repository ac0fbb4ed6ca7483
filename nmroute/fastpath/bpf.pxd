# Classic BPF: a tcpdump expression compiled once by libpcap at configure
# time (BpfProgram.compile), run per packet by our own interpreter
# (bpf_run), which never calls libpcap and reads nothing past buflen.
from libc.stdint cimport uint8_t, uint16_t, uint32_t

# One instruction, laid out as libpcap's struct bpf_insn.
ctypedef struct BpfInsn:
    uint16_t code
    uint8_t jt
    uint8_t jf
    uint32_t k


# The program's return value (0: no match; tcpdump keeps the packet when
# non-zero). prog must have passed BpfProgram's validation: every jump lands
# inside it and it cannot run off its end. A load past buflen returns 0, as
# in libpcap's bpf_filter. wirelen is what `len` loads (the frame's length
# on the wire); buflen the bytes present at pkt.
cdef uint32_t bpf_run(const BpfInsn* prog, const uint8_t* pkt, uint32_t wirelen,
                      uint32_t buflen) noexcept nogil


cdef class BpfProgram:
    cdef BpfInsn* insns
    cdef readonly uint32_t n
    cdef readonly str expr
    cdef list original
