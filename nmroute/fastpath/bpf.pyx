# distutils: libraries = pcap
"""Classic BPF: compile a tcpdump expression with libpcap, run it ourselves.

libpcap is used once, at configure time: pcap_open_dead(DLT_EN10MB) +
pcap_compile, the instructions are copied out, validated and decoded (see
decode()), and the libpcap program freed. Per packet, bpf_run() interprets
the decoded ops without the GIL and without any call into libpcap, with
libpcap's own semantics (bpf_filter.c): loads past the captured bytes end
the program with 0, division by a zero X returns 0.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from nmroute.fastpath.includes.pcap cimport (
    pcap_t, bpf_program, DLT_EN10MB, pcap_open_dead, pcap_compile, pcap_freecode,
    pcap_geterr, pcap_close)

from nmroute.errors import BpfError

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
_KNOWN = frozenset((
    LD_IMM, LDX_IMM, ST, STX, ALU_ADD_K, JA, RET_K, TAX, ALU_ADD_X, ALU_SUB_K, JEQ_K, RET_X,
    RET_A, ALU_SUB_X, JEQ_X, LD_W_ABS, ALU_MUL_K, JGT_K, LD_H_ABS, ALU_MUL_X, JGT_X, LD_B_ABS,
    ALU_DIV_K, JGE_K, ALU_DIV_X, JGE_X, LD_W_IND, ALU_OR_K, JSET_K, LD_H_IND, ALU_OR_X, JSET_X,
    LD_B_IND, ALU_AND_K, ALU_AND_X, LD_MEM, LDX_MEM, ALU_LSH_K, ALU_LSH_X, ALU_RSH_K, ALU_RSH_X,
    LD_W_LEN, LDX_W_LEN, ALU_NEG, TXA, ALU_MOD_K, ALU_MOD_X, ALU_XOR_K, ALU_XOR_X, LDX_MSH_B))
_JUMPS = frozenset((JEQ_K, JEQ_X, JGT_K, JGT_X, JGE_K, JGE_X, JSET_K, JSET_X))
_MEM = frozenset((LD_MEM, LDX_MEM, ST, STX))
_RET = frozenset((RET_K, RET_A, RET_X))


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


# --- the decoded form bpf_run interprets --------------------------------------------
#
# Decoding, once per program: each instruction becomes a BpfOp with a dense op
# number (the switch below compiles to one jump table), jump targets become
# absolute indexes, and the runs libpcap emits most (a load and the test that
# follows it, a load masked then compared, the IPv4 header length then a load
# and test relative to it) become one op each. Instructions a fused op covers
# are kept only if a jump lands on them. Why it is faster: the jump table is
# dense, and the next op's address depends on as little as possible (see
# jump()): in libpcap's output one side of most tests is the next op.

# BpfOp.flags.
cdef enum:
    F_ZERO_MEM = 1                # (first op) the program reads scratch memory: zero it
    J_T_NEXT = 2                  # jt is the next op
    J_F_NEXT = 4                  # jf is the next op

cdef enum:
    O_RET_K, O_RET_A, O_RET_X
    O_LD_W_ABS, O_LD_H_ABS, O_LD_B_ABS, O_LD_W_IND, O_LD_H_IND, O_LD_B_IND, O_LDX_MSH
    O_LD_LEN, O_LDX_LEN, O_LD_IMM, O_LDX_IMM, O_LD_MEM, O_LDX_MEM, O_ST, O_STX
    O_JA, O_JEQ_K, O_JGT_K, O_JGE_K, O_JSET_K, O_JEQ_X, O_JGT_X, O_JGE_X, O_JSET_X
    O_ADD_K, O_SUB_K, O_MUL_K, O_DIV_K, O_MOD_K, O_AND_K, O_OR_K, O_XOR_K, O_LSH_K, O_RSH_K
    O_ADD_X, O_SUB_X, O_MUL_X, O_DIV_X, O_MOD_X, O_AND_X, O_OR_X, O_XOR_X, O_LSH_X, O_RSH_X
    O_NEG, O_TAX, O_TXA
    # A load (k: offset) and the JEQ/JGT/JGE/JSET against v that follows it.
    O_W_ABS_EQ, O_W_ABS_GT, O_W_ABS_GE, O_W_ABS_SET
    O_H_ABS_EQ, O_H_ABS_GT, O_H_ABS_GE, O_H_ABS_SET
    O_B_ABS_EQ, O_B_ABS_GT, O_B_ABS_GE, O_B_ABS_SET
    O_H_IND_EQ, O_H_IND_GT, O_H_IND_GE, O_H_IND_SET
    O_B_IND_EQ, O_B_IND_GT, O_B_IND_GE, O_B_IND_SET
    # A load, AND m, JEQ v.
    O_W_ABS_AND_EQ, O_H_ABS_AND_EQ, O_B_ABS_AND_EQ, O_H_IND_AND_EQ, O_B_IND_AND_EQ
    # LDX MSH (k), an indexed load (m), JEQ/JSET v.
    O_MSH_H_EQ, O_MSH_H_SET, O_MSH_B_EQ, O_MSH_B_SET

_PLAIN = {
    RET_K: O_RET_K, RET_A: O_RET_A, RET_X: O_RET_X, LD_W_ABS: O_LD_W_ABS, LD_H_ABS: O_LD_H_ABS,
    LD_B_ABS: O_LD_B_ABS, LD_W_IND: O_LD_W_IND, LD_H_IND: O_LD_H_IND, LD_B_IND: O_LD_B_IND,
    LDX_MSH_B: O_LDX_MSH, LD_W_LEN: O_LD_LEN, LDX_W_LEN: O_LDX_LEN, LD_IMM: O_LD_IMM,
    LDX_IMM: O_LDX_IMM, LD_MEM: O_LD_MEM, LDX_MEM: O_LDX_MEM, ST: O_ST, STX: O_STX, JA: O_JA,
    JEQ_K: O_JEQ_K, JGT_K: O_JGT_K, JGE_K: O_JGE_K, JSET_K: O_JSET_K, JEQ_X: O_JEQ_X,
    JGT_X: O_JGT_X, JGE_X: O_JGE_X, JSET_X: O_JSET_X, ALU_ADD_K: O_ADD_K, ALU_SUB_K: O_SUB_K,
    ALU_MUL_K: O_MUL_K, ALU_DIV_K: O_DIV_K, ALU_MOD_K: O_MOD_K, ALU_AND_K: O_AND_K,
    ALU_OR_K: O_OR_K, ALU_XOR_K: O_XOR_K, ALU_LSH_K: O_LSH_K, ALU_RSH_K: O_RSH_K,
    ALU_ADD_X: O_ADD_X, ALU_SUB_X: O_SUB_X, ALU_MUL_X: O_MUL_X, ALU_DIV_X: O_DIV_X,
    ALU_MOD_X: O_MOD_X, ALU_AND_X: O_AND_X, ALU_OR_X: O_OR_X, ALU_XOR_X: O_XOR_X,
    ALU_LSH_X: O_LSH_X, ALU_RSH_X: O_RSH_X, ALU_NEG: O_NEG, TAX: O_TAX, TXA: O_TXA}
_LOADS = (LD_W_ABS, LD_H_ABS, LD_B_ABS, LD_H_IND, LD_B_IND)
_TESTS = (JEQ_K, JGT_K, JGE_K, JSET_K)
_LOAD_TEST = {(ld, t): O_W_ABS_EQ + 4 * i + j
              for i, ld in enumerate(_LOADS) for j, t in enumerate(_TESTS)}
_LOAD_AND_EQ = {ld: O_W_ABS_AND_EQ + i for i, ld in enumerate(_LOADS)}
_MSH_LOAD_TEST = {(LD_H_IND, JEQ_K): O_MSH_H_EQ, (LD_H_IND, JSET_K): O_MSH_H_SET,
                  (LD_B_IND, JEQ_K): O_MSH_B_EQ, (LD_B_IND, JSET_K): O_MSH_B_SET}


def _group(insns, i, bint fuse):
    """The op that runs instruction i: (op, k, m, v, index of the test whose
    targets it takes or None, instructions it covers)."""
    code, _, _, k = insns[i]
    nxt = insns[i + 1] if i + 1 < len(insns) else (None, 0, 0, 0)
    nxt2 = insns[i + 2] if i + 2 < len(insns) else (None, 0, 0, 0)
    if fuse and code == LDX_MSH_B and (nxt[0], nxt2[0]) in _MSH_LOAD_TEST:
        return _MSH_LOAD_TEST[nxt[0], nxt2[0]], k, nxt[3], nxt2[3], i + 2, 3
    if fuse and code in _LOADS and nxt[0] == ALU_AND_K and nxt2[0] == JEQ_K:
        return _LOAD_AND_EQ[code], k, nxt[3], nxt2[3], i + 2, 3
    if fuse and (code, nxt[0]) in _LOAD_TEST:
        return _LOAD_TEST[code, nxt[0]], k, 0, nxt[3], i + 1, 2
    return _PLAIN[code], k, 0, 0, (i if code in _JUMPS else None), 1


def decode(insns, bint fuse=True):
    """Validated (code, jt, jf, k) tuples -> (op, jt, jf, k, m, v, flags)
    tuples for bpf_run, fused where fuse says so.

    Only the instructions that can run as an op are kept (the first, jump
    targets, and what follows an op that goes on to the next), so the
    instructions a fused op covers usually go, and a test's target is then
    often the very next op: J_T_NEXT / J_F_NEXT say so, and bpf_run steps
    there without loading the target (nothing for the CPU to wait on)."""
    n = len(insns)
    runs = [False] * n
    runs[0] = True
    groups = {}
    for i in range(n):
        if not runs[i]:
            continue
        g = groups[i] = _group(insns, i, fuse)
        code = insns[i][0]
        if g[4] is not None:
            t = insns[g[4]]
            runs[g[4] + 1 + t[1]] = runs[g[4] + 1 + t[2]] = True
        elif code == JA:
            runs[i + 1 + insns[i][3]] = True
        elif code not in _RET:
            runs[i + 1] = True
    at = {}
    for i in range(n):
        if runs[i]:
            at[i] = len(at)
    out = []
    for i in range(n):
        if not runs[i]:
            continue
        op, k, m, v, test, _ = groups[i]
        jt = jf = flags = 0
        if test is not None:
            t = insns[test]
            jt, jf = at[test + 1 + t[1]], at[test + 1 + t[2]]
        elif insns[i][0] == JA:
            jt = at[i + 1 + k]
        if test is not None or insns[i][0] == JA:
            flags |= (J_T_NEXT if jt == at[i] + 1 else 0) | (J_F_NEXT if jf == at[i] + 1 else 0)
        if not out and any(ins[0] in (LD_MEM, LDX_MEM) for ins in insns):
            flags |= F_ZERO_MEM
        out.append((op, jt, jf, k, m, v, flags))
    return out


cdef inline uint32_t ld32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t ld16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef extern from *:
    """
    /* An empty asm statement: code the compiler may not merge away. */
    #define NMR_KEEP_BRANCH() __asm__ volatile("")
    """
    void NMR_KEEP_BRANCH() noexcept nogil


cdef inline const BpfOp* jump(const BpfOp* prog, const BpfOp* pc, bint taken) noexcept nogil:
    """A test's next op: jt if taken, else jf. Real branches, not
    conditional moves, so the CPU predicts them and runs ahead rather than
    wait for the packet's bytes; and when the target is the next op, no
    load of it either (pc + 1), so the next op's address waits on nothing."""
    if taken:
        if pc.flags & J_T_NEXT:
            NMR_KEEP_BRANCH()
            return pc + 1
        return prog + pc.jt
    if pc.flags & J_F_NEXT:
        NMR_KEEP_BRANCH()
        return pc + 1
    return prog + pc.jf


cdef uint32_t bpf_run(const BpfOp* prog, const uint8_t* pkt, uint32_t wirelen,
                      uint32_t buflen) noexcept nogil:
    # Offsets are summed in 64 bits (k + size, X + k never wrap) and compared
    # with the frame's length once per load. Tests jump with `continue`.
    cdef uint32_t A = 0, X = 0
    cdef uint64_t off, blen = buflen
    cdef uint32_t mem[BPF_MEMWORDS]
    cdef const BpfOp* pc = prog
    cdef uint16_t op
    if prog.flags & F_ZERO_MEM:
        memset(mem, 0, sizeof(mem))
    while True:
        op = pc.op
        # Fused: a load then a test.
        if op == O_H_ABS_EQ:
            if <uint64_t>pc.k + 2 > blen:
                return 0
            A = ld16(pkt + pc.k)
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_B_ABS_EQ:
            if pc.k >= blen:
                return 0
            A = pkt[pc.k]
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_H_ABS_SET:
            if <uint64_t>pc.k + 2 > blen:
                return 0
            A = ld16(pkt + pc.k)
            pc = jump(prog, pc, A & pc.v)
            continue
        elif op == O_W_ABS_AND_EQ:
            if <uint64_t>pc.k + 4 > blen:
                return 0
            A = ld32(pkt + pc.k) & pc.m
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_MSH_H_EQ:
            if pc.k >= blen:
                return 0
            X = (pkt[pc.k] & 0x0F) << 2
            off = <uint64_t>X + pc.m
            if off + 2 > blen:
                return 0
            A = ld16(pkt + off)
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_H_IND_EQ:
            off = <uint64_t>X + pc.k
            if off + 2 > blen:
                return 0
            A = ld16(pkt + off)
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_W_ABS_EQ:
            if <uint64_t>pc.k + 4 > blen:
                return 0
            A = ld32(pkt + pc.k)
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_W_ABS_GT:
            if <uint64_t>pc.k + 4 > blen:
                return 0
            A = ld32(pkt + pc.k)
            pc = jump(prog, pc, A > pc.v)
            continue
        elif op == O_W_ABS_GE:
            if <uint64_t>pc.k + 4 > blen:
                return 0
            A = ld32(pkt + pc.k)
            pc = jump(prog, pc, A >= pc.v)
            continue
        elif op == O_W_ABS_SET:
            if <uint64_t>pc.k + 4 > blen:
                return 0
            A = ld32(pkt + pc.k)
            pc = jump(prog, pc, A & pc.v)
            continue
        elif op == O_H_ABS_GT:
            if <uint64_t>pc.k + 2 > blen:
                return 0
            A = ld16(pkt + pc.k)
            pc = jump(prog, pc, A > pc.v)
            continue
        elif op == O_H_ABS_GE:
            if <uint64_t>pc.k + 2 > blen:
                return 0
            A = ld16(pkt + pc.k)
            pc = jump(prog, pc, A >= pc.v)
            continue
        elif op == O_B_ABS_GT:
            if pc.k >= blen:
                return 0
            A = pkt[pc.k]
            pc = jump(prog, pc, A > pc.v)
            continue
        elif op == O_B_ABS_GE:
            if pc.k >= blen:
                return 0
            A = pkt[pc.k]
            pc = jump(prog, pc, A >= pc.v)
            continue
        elif op == O_B_ABS_SET:
            if pc.k >= blen:
                return 0
            A = pkt[pc.k]
            pc = jump(prog, pc, A & pc.v)
            continue
        elif op == O_H_IND_GT:
            off = <uint64_t>X + pc.k
            if off + 2 > blen:
                return 0
            A = ld16(pkt + off)
            pc = jump(prog, pc, A > pc.v)
            continue
        elif op == O_H_IND_GE:
            off = <uint64_t>X + pc.k
            if off + 2 > blen:
                return 0
            A = ld16(pkt + off)
            pc = jump(prog, pc, A >= pc.v)
            continue
        elif op == O_H_IND_SET:
            off = <uint64_t>X + pc.k
            if off + 2 > blen:
                return 0
            A = ld16(pkt + off)
            pc = jump(prog, pc, A & pc.v)
            continue
        elif op == O_B_IND_EQ:
            off = <uint64_t>X + pc.k
            if off >= blen:
                return 0
            A = pkt[off]
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_B_IND_GT:
            off = <uint64_t>X + pc.k
            if off >= blen:
                return 0
            A = pkt[off]
            pc = jump(prog, pc, A > pc.v)
            continue
        elif op == O_B_IND_GE:
            off = <uint64_t>X + pc.k
            if off >= blen:
                return 0
            A = pkt[off]
            pc = jump(prog, pc, A >= pc.v)
            continue
        elif op == O_B_IND_SET:
            off = <uint64_t>X + pc.k
            if off >= blen:
                return 0
            A = pkt[off]
            pc = jump(prog, pc, A & pc.v)
            continue
        # Fused: a load, AND m, JEQ v.
        elif op == O_H_ABS_AND_EQ:
            if <uint64_t>pc.k + 2 > blen:
                return 0
            A = ld16(pkt + pc.k) & pc.m
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_B_ABS_AND_EQ:
            if pc.k >= blen:
                return 0
            A = pkt[pc.k] & pc.m
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_H_IND_AND_EQ:
            off = <uint64_t>X + pc.k
            if off + 2 > blen:
                return 0
            A = ld16(pkt + off) & pc.m
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_B_IND_AND_EQ:
            off = <uint64_t>X + pc.k
            if off >= blen:
                return 0
            A = pkt[off] & pc.m
            pc = jump(prog, pc, A == pc.v)
            continue
        # Fused: MSH, an indexed load, a test.
        elif op == O_MSH_H_SET:
            if pc.k >= blen:
                return 0
            X = (pkt[pc.k] & 0x0F) << 2
            off = <uint64_t>X + pc.m
            if off + 2 > blen:
                return 0
            A = ld16(pkt + off)
            pc = jump(prog, pc, A & pc.v)
            continue
        elif op == O_MSH_B_EQ:
            if pc.k >= blen:
                return 0
            X = (pkt[pc.k] & 0x0F) << 2
            off = <uint64_t>X + pc.m
            if off >= blen:
                return 0
            A = pkt[off]
            pc = jump(prog, pc, A == pc.v)
            continue
        elif op == O_MSH_B_SET:
            if pc.k >= blen:
                return 0
            X = (pkt[pc.k] & 0x0F) << 2
            off = <uint64_t>X + pc.m
            if off >= blen:
                return 0
            A = pkt[off]
            pc = jump(prog, pc, A & pc.v)
            continue
        # libpcap's instructions, one each.
        elif op == O_RET_K:
            return pc.k
        elif op == O_RET_A:
            return A
        elif op == O_RET_X:
            return X
        elif op == O_LD_W_ABS:
            if <uint64_t>pc.k + 4 > blen:
                return 0
            A = ld32(pkt + pc.k)
        elif op == O_LD_H_ABS:
            if <uint64_t>pc.k + 2 > blen:
                return 0
            A = ld16(pkt + pc.k)
        elif op == O_LD_B_ABS:
            if pc.k >= blen:
                return 0
            A = pkt[pc.k]
        elif op == O_LD_W_IND:
            off = <uint64_t>X + pc.k
            if off + 4 > blen:
                return 0
            A = ld32(pkt + off)
        elif op == O_LD_H_IND:
            off = <uint64_t>X + pc.k
            if off + 2 > blen:
                return 0
            A = ld16(pkt + off)
        elif op == O_LD_B_IND:
            off = <uint64_t>X + pc.k
            if off >= blen:
                return 0
            A = pkt[off]
        elif op == O_LDX_MSH:
            if pc.k >= blen:
                return 0
            X = (pkt[pc.k] & 0x0F) << 2
        elif op == O_LD_LEN:
            A = wirelen
        elif op == O_LDX_LEN:
            X = wirelen
        elif op == O_LD_IMM:
            A = pc.k
        elif op == O_LDX_IMM:
            X = pc.k
        elif op == O_LD_MEM:
            A = mem[pc.k]
        elif op == O_LDX_MEM:
            X = mem[pc.k]
        elif op == O_ST:
            mem[pc.k] = A
        elif op == O_STX:
            mem[pc.k] = X
        elif op == O_JA:
            pc = jump(prog, pc, True)
            continue
        elif op == O_JEQ_K:
            pc = jump(prog, pc, A == pc.k)
            continue
        elif op == O_JGT_K:
            pc = jump(prog, pc, A > pc.k)
            continue
        elif op == O_JGE_K:
            pc = jump(prog, pc, A >= pc.k)
            continue
        elif op == O_JSET_K:
            pc = jump(prog, pc, A & pc.k)
            continue
        elif op == O_JEQ_X:
            pc = jump(prog, pc, A == X)
            continue
        elif op == O_JGT_X:
            pc = jump(prog, pc, A > X)
            continue
        elif op == O_JGE_X:
            pc = jump(prog, pc, A >= X)
            continue
        elif op == O_JSET_X:
            pc = jump(prog, pc, A & X)
            continue
        elif op == O_ADD_X:
            A += X
        elif op == O_SUB_X:
            A -= X
        elif op == O_MUL_X:
            A *= X
        elif op == O_DIV_X:
            if X == 0:
                return 0
            A //= X
        elif op == O_MOD_X:
            if X == 0:
                return 0
            A %= X
        elif op == O_AND_X:
            A &= X
        elif op == O_OR_X:
            A |= X
        elif op == O_XOR_X:
            A ^= X
        elif op == O_LSH_X:
            A = A << X if X < 32 else 0
        elif op == O_RSH_X:
            A = A >> X if X < 32 else 0
        elif op == O_ADD_K:
            A += pc.k
        elif op == O_SUB_K:
            A -= pc.k
        elif op == O_MUL_K:
            A *= pc.k
        elif op == O_DIV_K:
            A //= pc.k
        elif op == O_MOD_K:
            A %= pc.k
        elif op == O_AND_K:
            A &= pc.k
        elif op == O_OR_K:
            A |= pc.k
        elif op == O_XOR_K:
            A ^= pc.k
        elif op == O_LSH_K:
            A <<= pc.k
        elif op == O_RSH_K:
            A >>= pc.k
        elif op == O_NEG:
            A = 0 - A
        elif op == O_TAX:
            X = A
        elif op == O_TXA:
            A = X
        else:
            return 0                  # decode emits no other op
        pc += 1


cdef class BpfProgram:
    """A validated classic BPF program, decoded into C memory."""

    def __dealloc__(self):
        free(self.ops)

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
        common runs of instructions as one op (the result is the same)."""
        cdef BpfProgram prog = BpfProgram.__new__(BpfProgram)
        cdef Py_ssize_t i
        insns = [tuple(int(v) for v in ins) for ins in insns]
        validate(insns)
        ops = decode(insns, fuse)
        prog.ops = <BpfOp*>calloc(len(ops), sizeof(BpfOp))
        if prog.ops == NULL:
            raise MemoryError()
        for i, (op, jt, jf, k, m, v, flags) in enumerate(ops):
            prog.ops[i].op, prog.ops[i].jt, prog.ops[i].jf = op, jt, jf
            prog.ops[i].k, prog.ops[i].m, prog.ops[i].v = k, m, v
            prog.ops[i].flags = flags
        prog.n = len(insns)
        prog.original = insns
        prog.decoded = ops
        prog.expr = None
        return prog

    def instructions(self):
        """The program as given: (code, jt, jf, k) tuples."""
        return list(self.original)

    def decoded_ops(self):
        """The program as bpf_run runs it: (op, jt, jf, k, m, v, flags) tuples."""
        return list(self.decoded)

    def run(self, const uint8_t[:] frame not None, wirelen=None):
        """The program's return value on one frame (for tests)."""
        cdef uint32_t n = frame.shape[0]
        cdef uint32_t wl = n if wirelen is None else wirelen
        cdef uint8_t empty = 0
        return bpf_run(self.ops, &frame[0] if n else &empty, wl, n)
