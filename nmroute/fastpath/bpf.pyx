# distutils: libraries = pcap
"""Classic BPF: compile a tcpdump expression with libpcap, run it ourselves.

libpcap is used once, at configure time: pcap_open_dead(DLT_EN10MB) +
pcap_compile, the instructions are copied out and the libpcap program freed.
Per packet, bpf_run() interprets the copy without the GIL and without any
call into libpcap, with libpcap's own semantics (bpf_filter.c): loads past
the captured bytes end the program with 0, division by a zero X returns 0.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from nmroute.fastpath.includes.pcap cimport (
    pcap_t, bpf_program, DLT_EN10MB, pcap_open_dead, pcap_compile, pcap_freecode,
    pcap_geterr, pcap_close)

cdef enum:
    BPF_MEMWORDS = 16
    MAX_INSNS = 4096

# Opcodes (class | size | mode, class | op | src), as in <pcap/bpf.h>.
cdef enum:
    LD_IMM = 0x00
    LDX_IMM = 0x01
    ST = 0x02
    STX = 0x03
    ALU_ADD_K = 0x04
    JA = 0x05
    RET_K = 0x06
    TAX = 0x07
    ALU_ADD_X = 0x0c
    ALU_SUB_K = 0x14
    JEQ_K = 0x15
    RET_X = 0x0e
    RET_A = 0x16
    ALU_SUB_X = 0x1c
    JEQ_X = 0x1d
    LD_W_ABS = 0x20
    ALU_MUL_K = 0x24
    JGT_K = 0x25
    LD_H_ABS = 0x28
    ALU_MUL_X = 0x2c
    JGT_X = 0x2d
    LD_B_ABS = 0x30
    ALU_DIV_K = 0x34
    JGE_K = 0x35
    ALU_DIV_X = 0x3c
    JGE_X = 0x3d
    LD_W_IND = 0x40
    ALU_OR_K = 0x44
    JSET_K = 0x45
    LD_H_IND = 0x48
    ALU_OR_X = 0x4c
    JSET_X = 0x4d
    LD_B_IND = 0x50
    ALU_AND_K = 0x54
    ALU_AND_X = 0x5c
    LD_MEM = 0x60
    LDX_MEM = 0x61
    ALU_LSH_K = 0x64
    ALU_LSH_X = 0x6c
    ALU_RSH_K = 0x74
    ALU_RSH_X = 0x7c
    LD_W_LEN = 0x80
    LDX_W_LEN = 0x81
    ALU_NEG = 0x84
    TXA = 0x87
    ALU_MOD_K = 0x94
    ALU_MOD_X = 0x9c
    ALU_XOR_K = 0xa4
    ALU_XOR_X = 0xac
    LDX_MSH_B = 0xb1
    # Ours, never accepted from outside: a load fused with the JEQ_K (or
    # JSET_K) that follows it, the commonest pair in libpcap's output. The
    # JEQ stays in place for jumps that land on it.
    F_LDW_ABS_JEQ = 0xc0
    F_LDH_ABS_JEQ = 0xc1
    F_LDB_ABS_JEQ = 0xc2
    F_LDH_IND_JEQ = 0xc3
    F_LDB_IND_JEQ = 0xc4
    F_LDH_ABS_JSET = 0xc5

_KNOWN = frozenset((
    LD_IMM, LDX_IMM, ST, STX, ALU_ADD_K, JA, RET_K, TAX, ALU_ADD_X, ALU_SUB_K, JEQ_K, RET_X,
    RET_A, ALU_SUB_X, JEQ_X, LD_W_ABS, ALU_MUL_K, JGT_K, LD_H_ABS, ALU_MUL_X, JGT_X, LD_B_ABS,
    ALU_DIV_K, JGE_K, ALU_DIV_X, JGE_X, LD_W_IND, ALU_OR_K, JSET_K, LD_H_IND, ALU_OR_X, JSET_X,
    LD_B_IND, ALU_AND_K, ALU_AND_X, LD_MEM, LDX_MEM, ALU_LSH_K, ALU_LSH_X, ALU_RSH_K, ALU_RSH_X,
    LD_W_LEN, LDX_W_LEN, ALU_NEG, TXA, ALU_MOD_K, ALU_MOD_X, ALU_XOR_K, ALU_XOR_X, LDX_MSH_B))
_JUMPS = frozenset((JEQ_K, JEQ_X, JGT_K, JGT_X, JGE_K, JGE_X, JSET_K, JSET_X))
_MEM = frozenset((LD_MEM, LDX_MEM, ST, STX))
_RET = frozenset((RET_K, RET_A, RET_X))
_FUSE = {(LD_W_ABS, JEQ_K): F_LDW_ABS_JEQ, (LD_H_ABS, JEQ_K): F_LDH_ABS_JEQ,
         (LD_B_ABS, JEQ_K): F_LDB_ABS_JEQ, (LD_H_IND, JEQ_K): F_LDH_IND_JEQ,
         (LD_B_IND, JEQ_K): F_LDB_IND_JEQ, (LD_H_ABS, JSET_K): F_LDH_ABS_JSET}


class BpfError(ValueError):
    """libpcap rejected an expression, or a program failed validation."""


def validate(insns):
    """Raise BpfError unless the program (a list of (code, jt, jf, k)) is
    safe for bpf_run: known opcodes, forward jumps that land inside it, a
    return at the end, scratch memory indexes < 16, no constant division by
    zero or shift by 32 or more."""
    n = len(insns)
    if not 0 < n <= MAX_INSNS:
        raise BpfError(f"a program has 1 to {MAX_INSNS} instructions, got {n}")
    for i, (code, jt, jf, k) in enumerate(insns):
        where = f"instruction {i}"
        if code not in _KNOWN:
            raise BpfError(f"{where}: unknown opcode {code:#04x}")
        if code == JA and i + 1 + k >= n:
            raise BpfError(f"{where}: jump past the end")
        if code in _JUMPS and (i + 1 + jt >= n or i + 1 + jf >= n):
            raise BpfError(f"{where}: jump past the end")
        if code in _MEM and k >= BPF_MEMWORDS:
            raise BpfError(f"{where}: scratch memory index {k} out of 0..15")
        if code in (ALU_DIV_K, ALU_MOD_K) and k == 0:
            raise BpfError(f"{where}: division by zero")
        if code in (ALU_LSH_K, ALU_RSH_K) and k >= 32:
            raise BpfError(f"{where}: shift by {k}")
    if insns[n - 1][0] not in _RET:
        raise BpfError("the last instruction is not a return")


cdef inline uint32_t ld32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t ld16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef uint32_t bpf_run(const BpfInsn* prog, const uint8_t* pkt, uint32_t wirelen,
                      uint32_t buflen) noexcept nogil:
    cdef uint32_t A = 0, X = 0
    cdef uint64_t off
    cdef uint32_t mem[BPF_MEMWORDS]
    cdef const BpfInsn* pc = prog
    cdef uint16_t code
    memset(mem, 0, sizeof(mem))
    while True:
        code = pc.code
        if code == RET_K:
            return pc.k
        elif code == RET_A:
            return A
        elif code == RET_X:
            return X
        elif code == LD_W_ABS:
            if <uint64_t>pc.k + 4 > buflen:
                return 0
            A = ld32(pkt + pc.k)
        elif code == LD_H_ABS:
            if <uint64_t>pc.k + 2 > buflen:
                return 0
            A = ld16(pkt + pc.k)
        elif code == LD_B_ABS:
            if pc.k >= buflen:
                return 0
            A = pkt[pc.k]
        elif code == LD_W_IND:
            off = <uint64_t>X + pc.k
            if off + 4 > buflen:
                return 0
            A = ld32(pkt + off)
        elif code == LD_H_IND:
            off = <uint64_t>X + pc.k
            if off + 2 > buflen:
                return 0
            A = ld16(pkt + off)
        elif code == LD_B_IND:
            off = <uint64_t>X + pc.k
            if off >= buflen:
                return 0
            A = pkt[off]
        elif code == LDX_MSH_B:
            if pc.k >= buflen:
                return 0
            X = (pkt[pc.k] & 0x0F) << 2
        elif code == F_LDH_ABS_JEQ:
            if <uint64_t>pc.k + 2 > buflen:
                return 0
            A = ld16(pkt + pc.k)
            pc += 1
            pc += pc.jt if A == pc.k else pc.jf
        elif code == F_LDB_ABS_JEQ:
            if pc.k >= buflen:
                return 0
            A = pkt[pc.k]
            pc += 1
            pc += pc.jt if A == pc.k else pc.jf
        elif code == F_LDW_ABS_JEQ:
            if <uint64_t>pc.k + 4 > buflen:
                return 0
            A = ld32(pkt + pc.k)
            pc += 1
            pc += pc.jt if A == pc.k else pc.jf
        elif code == F_LDH_IND_JEQ:
            off = <uint64_t>X + pc.k
            if off + 2 > buflen:
                return 0
            A = ld16(pkt + off)
            pc += 1
            pc += pc.jt if A == pc.k else pc.jf
        elif code == F_LDB_IND_JEQ:
            off = <uint64_t>X + pc.k
            if off >= buflen:
                return 0
            A = pkt[off]
            pc += 1
            pc += pc.jt if A == pc.k else pc.jf
        elif code == F_LDH_ABS_JSET:
            if <uint64_t>pc.k + 2 > buflen:
                return 0
            A = ld16(pkt + pc.k)
            pc += 1
            pc += pc.jt if A & pc.k else pc.jf
        elif code == LD_W_LEN:
            A = wirelen
        elif code == LDX_W_LEN:
            X = wirelen
        elif code == LD_IMM:
            A = pc.k
        elif code == LDX_IMM:
            X = pc.k
        elif code == LD_MEM:
            A = mem[pc.k]
        elif code == LDX_MEM:
            X = mem[pc.k]
        elif code == ST:
            mem[pc.k] = A
        elif code == STX:
            mem[pc.k] = X
        elif code == JA:
            pc += pc.k
        elif code == JGT_K:
            pc += pc.jt if A > pc.k else pc.jf
        elif code == JGE_K:
            pc += pc.jt if A >= pc.k else pc.jf
        elif code == JEQ_K:
            pc += pc.jt if A == pc.k else pc.jf
        elif code == JSET_K:
            pc += pc.jt if A & pc.k else pc.jf
        elif code == JGT_X:
            pc += pc.jt if A > X else pc.jf
        elif code == JGE_X:
            pc += pc.jt if A >= X else pc.jf
        elif code == JEQ_X:
            pc += pc.jt if A == X else pc.jf
        elif code == JSET_X:
            pc += pc.jt if A & X else pc.jf
        elif code == ALU_ADD_X:
            A += X
        elif code == ALU_SUB_X:
            A -= X
        elif code == ALU_MUL_X:
            A *= X
        elif code == ALU_DIV_X:
            if X == 0:
                return 0
            A //= X
        elif code == ALU_MOD_X:
            if X == 0:
                return 0
            A %= X
        elif code == ALU_AND_X:
            A &= X
        elif code == ALU_OR_X:
            A |= X
        elif code == ALU_XOR_X:
            A ^= X
        elif code == ALU_LSH_X:
            A = A << X if X < 32 else 0
        elif code == ALU_RSH_X:
            A = A >> X if X < 32 else 0
        elif code == ALU_ADD_K:
            A += pc.k
        elif code == ALU_SUB_K:
            A -= pc.k
        elif code == ALU_MUL_K:
            A *= pc.k
        elif code == ALU_DIV_K:
            A //= pc.k
        elif code == ALU_MOD_K:
            A %= pc.k
        elif code == ALU_AND_K:
            A &= pc.k
        elif code == ALU_OR_K:
            A |= pc.k
        elif code == ALU_XOR_K:
            A ^= pc.k
        elif code == ALU_LSH_K:
            A <<= pc.k
        elif code == ALU_RSH_K:
            A >>= pc.k
        elif code == ALU_NEG:
            A = 0 - A
        elif code == TAX:
            X = A
        elif code == TXA:
            A = X
        else:
            return 0                  # validation lets no other opcode in
        pc += 1


cdef class BpfProgram:
    """A validated classic BPF program, owned in C memory."""

    def __dealloc__(self):
        free(self.insns)

    @staticmethod
    def compile(str expr, int snaplen=65535, bint optimize=True):
        """Compile a tcpdump expression for Ethernet frames, as `tcpdump -r`
        does (netmask 0). Raises BpfError with libpcap's message."""
        cdef pcap_t* h = pcap_open_dead(DLT_EN10MB, snaplen)
        cdef bpf_program fp
        cdef bytes text = expr.encode()
        cdef BpfProgram prog
        if h == NULL:
            raise MemoryError()
        try:
            if pcap_compile(h, &fp, text, optimize, 0) != 0:
                raise BpfError(pcap_geterr(h).decode(errors="replace"))
            insns = [(fp.bf_insns[i].code, fp.bf_insns[i].jt, fp.bf_insns[i].jf,
                      fp.bf_insns[i].k) for i in range(fp.bf_len)]
            pcap_freecode(&fp)
        finally:
            pcap_close(h)
        prog = BpfProgram.from_insns(insns)
        prog.expr = expr
        return prog

    @staticmethod
    def from_insns(insns, bint fuse=True):
        """A program from (code, jt, jf, k) tuples, validated; fuse: run
        common instruction pairs as one (the result is the same)."""
        cdef BpfProgram prog = BpfProgram.__new__(BpfProgram)
        cdef Py_ssize_t i
        insns = [tuple(int(v) for v in ins) for ins in insns]
        validate(insns)
        prog.insns = <BpfInsn*>malloc(len(insns) * sizeof(BpfInsn))
        if prog.insns == NULL:
            raise MemoryError()
        for i, (code, jt, jf, k) in enumerate(insns):
            if i + 1 < len(insns) and fuse:
                code = _FUSE.get((code, insns[i + 1][0]), code)
            prog.insns[i].code, prog.insns[i].jt, prog.insns[i].jf, prog.insns[i].k = (
                code, jt, jf, k)
        prog.n = len(insns)
        prog.original = insns
        prog.expr = None
        return prog

    def instructions(self):
        """The program as given: (code, jt, jf, k) tuples."""
        return list(self.original)

    def run(self, const uint8_t[:] frame not None, wirelen=None):
        """The program's return value on one frame (for tests)."""
        cdef uint32_t n = frame.shape[0]
        cdef uint32_t wl = n if wirelen is None else wirelen
        cdef uint8_t empty = 0
        return bpf_run(self.insns, &frame[0] if n else &empty, wl, n)
