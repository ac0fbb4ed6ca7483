"""The executor: pulls batches from input ports and pushes them through the
graph depth-first, in C, with no Python object touched per packet.

One round: for each input port, rxsync when its ring is empty, take up to
`batch` frames (fewer if a tx ring it reaches lacks room: the input is held
back rather than frames dropped, as netmap's bridge does), push them, give
the rx slots back. Then txsync every port with frames queued. Forwarding into
a tx ring swaps buffer indexes with the rx slot the frame came from
(NS_BUF_CHANGED); nothing is copied unless the port sits on another pool.
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from nmroute.fastpath.batch cimport OUT_DROP, OFF_NONE
from nmroute.fastpath.drops cimport (
    N_DROP_REASONS, DROP_NO_BUFFER, DROP_TX_FULL, DROP_BAD_OUTPUT)
from nmroute.fastpath.debug cimport check
from nmroute.fastpath.element cimport Element
from nmroute.fastpath.includes.sys cimport sleep_ns, prctl, PR_SET_TIMERSLACK
from nmroute.fastpath.pool cimport POOL_NONE
from nmroute.fastpath.ports.port cimport Port, P_RX, P_RX_BYTES
from nmroute.fastpath.ring cimport (
    NmRing, Slot, NS_BUF_CHANGED, ring_next, ring_space, ring_pending, slot_buf)

cdef enum:
    E_OUT = E_DROPS + N_DROP_REASONS
    IDLE_SLEEP_NS = 20000


cdef class Executor:
    def __cinit__(self, Pool pool, uint32_t batch=BATCH_MAX):
        if not 1 <= batch <= BATCH_MAX:
            raise ValueError(f"batch must be 1..{BATCH_MAX}")
        self.pool = pool
        self.batch = batch
        self.objs = []
        memset(&self.blank, 0, sizeof(Desc))
        self.blank.l3_off = OFF_NONE
        self.blank.l4_off = OFF_NONE

    def __dealloc__(self):
        cdef int i
        for i in range(self.n_nodes):
            free(self.nodes[i].out)
            free(self.nodes[i].cnt)
            free(self.nodes[i].scratch)
        for i in range(self.n_inputs):
            free(self.inputs[i].reach)
            free(self.inputs[i].mult)
        free(self.nodes)
        free(self.inputs)

    # -- building (Python side, once) ---------------------------------------

    def build(self, nodes, inputs):
        """nodes: list of dicts {obj, kind: 'element'|'port', outs: [node idx],
        ctr: address of the element's counter block (elements only)}.
        inputs: list of dicts {port, first: node idx, external: bool,
        reach: [(node idx, paths)]}."""
        cdef Node* n
        cdef Input* inp
        cdef int i, k
        self.nodes = <Node*>calloc(max(len(nodes), 1), sizeof(Node))
        self.inputs = <Input*>calloc(max(len(inputs), 1), sizeof(Input))
        if self.nodes == NULL or self.inputs == NULL:
            raise MemoryError()
        for i, spec in enumerate(nodes):
            n = &self.nodes[i]
            self.n_nodes = i + 1
            obj = spec["obj"]
            self.objs.append(obj)
            n.obj = <void*>obj
            outs = spec.get("outs", [])
            n.n_out = len(outs)
            n.out = <int*>calloc(max(n.n_out, 1), sizeof(int))
            n.cnt = <uint32_t*>calloc(max(n.n_out, 1), sizeof(uint32_t))
            n.scratch = <Desc*>calloc(max(n.n_out, 1) * BATCH_MAX, sizeof(Desc))
            if n.out == NULL or n.cnt == NULL or n.scratch == NULL:
                raise MemoryError()
            for k, o in enumerate(outs):
                if not 0 <= o < len(nodes):
                    raise ValueError(f"node {i}: output {k} goes to no node")
                n.out[k] = o
            if spec["kind"] == "element":
                n.kind = K_ELEMENT
                n.fanout = type(obj).FANOUT
                n.ctr = <uint64_t*><uintptr_t>spec["ctr"]
            else:
                n.kind = K_PORT
                if (<Port>obj).tx == NULL:
                    raise ValueError(f"port {obj.name} has no tx ring")
                n.tx = (<Port>obj).tx
                n.copy = (spec.get("copy", False)
                          or (<Port>obj).tx_ring.pool is not self.pool)
        for i, spec in enumerate(inputs):
            inp = &self.inputs[i]
            self.n_inputs = i + 1
            port = spec["port"]
            if (<Port>port).rx == NULL:
                raise ValueError(f"port {port.name} has no rx ring")
            inp.rx = (<Port>port).rx
            self.objs.append(port)
            inp.port = <void*>port
            inp.first = spec["first"]
            inp.external = spec["external"]
            reach = spec["reach"]
            inp.n_reach = len(reach)
            inp.reach = <int*>calloc(max(len(reach), 1), sizeof(int))
            inp.mult = <int*>calloc(max(len(reach), 1), sizeof(int))
            if inp.reach == NULL or inp.mult == NULL:
                raise MemoryError()
            for k, (node, paths) in enumerate(reach):
                inp.reach[k] = node
                inp.mult[k] = paths

    def run(self):
        """Run until every external input is exhausted or `stop` is set,
        then drain what is still in rings. Releases the GIL throughout."""
        with nogil:
            # An idle round sleeps IDLE_SLEEP_NS: without this the kernel may
            # stretch it by the default 50 µs timer slack, which a ping or a
            # TCP ACK waiting in an rx ring would pay.
            prctl(PR_SET_TIMERSLACK, <unsigned long>1000, 0, 0, 0)
            self.loop()

    # -- the fast path ------------------------------------------------------

    cdef void push(self, int ni, Batch* b) noexcept nogil:
        cdef Node* node = &self.nodes[ni]
        cdef int r
        if b.n == 0:
            return
        if node.kind == K_PORT:
            self.enqueue(node, b)
            return
        node.ctr[E_IN] += b.n
        r = (<Element>node.obj).process(b)
        if node.fanout:
            self.fanout(node, b)
        elif 0 <= r < node.n_out:
            node.ctr[E_OUT + r] += b.n
            self.push(node.out[r], b)
        else:
            self.scatter(node, b)

    cdef void scatter(self, Node* node, Batch* b) noexcept nogil:
        """Split a batch by each packet's `out`; count and release drops."""
        cdef uint32_t i, k, n = b.n, kept = 0, pos
        cdef uint16_t o
        cdef Desc* p
        cdef uint32_t* cnt = node.cnt
        cdef Batch sub
        for k in range(<uint32_t>node.n_out):
            cnt[k] = 0
        for i in range(n):
            p = &b.d[i]
            o = p.out
            if o >= node.n_out:
                if o != OUT_DROP:
                    p.out = OUT_DROP
                    p.drop = DROP_BAD_OUTPUT
                if p.drop >= N_DROP_REASONS:
                    p.drop = DROP_BAD_OUTPUT
                node.ctr[E_DROPS + p.drop] += 1
                if p.slot == NULL:
                    self.pool.release(p.buf_idx)
            else:
                cnt[o] += 1
                kept += 1
        if kept == 0:
            return
        for k in range(<uint32_t>node.n_out):
            if cnt[k] == kept:
                # One output takes them all: compact in place if needed.
                node.ctr[E_OUT + k] += kept
                if kept != n:
                    pos = 0
                    for i in range(n):
                        if b.d[i].out != OUT_DROP:
                            if pos != i:
                                b.d[pos] = b.d[i]
                            pos += 1
                    b.n = kept
                self.push(node.out[k], b)
                return
        # Counting sort into the node's scratch, then one push per output.
        pos = 0
        for k in range(<uint32_t>node.n_out):
            node.ctr[E_OUT + k] += cnt[k]
            o = cnt[k]
            cnt[k] = pos
            pos += o
        for i in range(n):
            o = b.d[i].out
            if o != OUT_DROP:
                node.scratch[cnt[o]] = b.d[i]
                cnt[o] += 1
        pos = 0
        for k in range(<uint32_t>node.n_out):
            sub.d = node.scratch + pos
            sub.n = cnt[k] - pos
            sub.buf_size = b.buf_size
            pos = cnt[k]
            self.push(node.out[k], &sub)

    cdef void fanout(self, Node* node, Batch* b) noexcept nogil:
        """Every packet to every output: copies into spare buffers for
        outputs 1.., taken before output 0 may rewrite the originals."""
        cdef uint32_t i, m
        cdef int k
        cdef uint32_t idx
        cdef Desc* p
        cdef Desc* c
        cdef Batch sub
        for k in range(1, node.n_out):
            m = 0
            for i in range(b.n):
                p = &b.d[i]
                idx = self.pool.alloc()
                if idx == POOL_NONE:
                    node.ctr[E_DROPS + DROP_NO_BUFFER] += 1
                    continue
                c = &node.scratch[k * BATCH_MAX + m]
                c[0] = p[0]
                c.buf_idx = idx
                c.slot = NULL
                c.data = self.pool.buf(idx)
                memcpy(c.data, p.data, p.len)
                m += 1
            node.ctr[E_OUT + k] += m
            sub.d = node.scratch + k * BATCH_MAX
            sub.n = m
            sub.buf_size = b.buf_size
            self.push(node.out[k], &sub)
        if node.n_out > 0:
            node.ctr[E_OUT] += b.n
            self.push(node.out[0], b)

    cdef void enqueue(self, Node* node, Batch* b) noexcept nogil:
        """Queue a batch on a port's tx ring: swap buffers, or copy."""
        cdef NmRing* ring = node.tx
        cdef uint32_t i, h = ring.head, old
        cdef Slot* s
        cdef Desc* p
        for i in range(b.n):
            p = &b.d[i]
            check(p.buf_idx < self.pool.n_bufs, b"enqueue: buffer index out of the pool")
            check(p.len <= ring.buf_size, b"enqueue: frame longer than a buffer")
            if ((ring.tail - h) & ring.mask) == 0:
                # No room: the input was not held back enough. Count it,
                # never overwrite a queued frame.
                (<Port>node.obj).count_drop(DROP_TX_FULL, 1)
                if p.slot == NULL:
                    self.pool.release(p.buf_idx)
                continue
            s = &ring.slots[h]
            if node.copy:
                memcpy(slot_buf(ring, s), p.data, p.len)
                if p.slot == NULL:
                    self.pool.release(p.buf_idx)
            else:
                old = s.buf_idx
                s.buf_idx = p.buf_idx
                if p.slot != NULL:
                    p.slot.buf_idx = old
                    p.slot.flags |= NS_BUF_CHANGED
                else:
                    self.pool.release(old)
                s.flags |= NS_BUF_CHANGED
            s.len = p.len
            s.ts = p.ts
            h = ring_next(ring, h)
        ring.head = h
        ring.cur = h

    cdef uint64_t pull(self, Input* inp) noexcept nogil:
        """One batch from one input port; returns the frames moved."""
        cdef NmRing* ring = inp.rx
        cdef NmRing* tx
        cdef uint32_t n, room, i, h
        cdef uint64_t nbytes = 0
        cdef uint16_t port_id = (<Port>inp.port).port_id
        cdef uint64_t* ctr
        cdef int k
        cdef Slot* s
        cdef Desc* p
        cdef Batch b
        if ring_space(ring) == 0:
            (<Port>inp.port).rxsync()
        n = ring_space(ring)
        if n == 0:
            if (<Port>inp.port).eof:
                inp.done = True
            return 0
        if n > self.batch:
            n = self.batch
        for k in range(inp.n_reach):
            tx = self.nodes[inp.reach[k]].tx
            room = ring_space(tx) // inp.mult[k]
            if room < n:
                (<Port>self.nodes[inp.reach[k]].obj).txsync()
                room = ring_space(tx) // inp.mult[k]
                if room < n:
                    n = room
        if n == 0:
            return 0
        h = ring.head
        check(n < ring.num_slots and h <= ring.mask, b"pull: ring indexes out of range")
        for i in range(n):
            s = &ring.slots[h]
            check(s.buf_idx < self.pool.n_bufs, b"pull: buffer index out of the pool")
            p = &self.descs[i]
            p[0] = self.blank          # one 64-byte copy, then the frame's own fields
            p.buf_idx = s.buf_idx
            p.data = slot_buf(ring, s)
            p.len = s.len
            p.ts = s.ts
            p.slot = s
            p.in_port = port_id
            nbytes += s.len
            h = ring_next(ring, h)
        ctr = (<Port>inp.port).ctr
        ctr[P_RX] += n
        ctr[P_RX_BYTES] += nbytes
        b.d = self.descs
        b.n = n
        b.buf_size = ring.buf_size
        self.push(inp.first, &b)
        ring.head = h
        ring.cur = h
        return n

    cdef uint64_t sync_tx(self) noexcept nogil:
        """txsync every port with frames queued; returns how many were sent."""
        cdef int i
        cdef uint64_t moved = 0
        cdef uint32_t before
        for i in range(self.n_nodes):
            if self.nodes[i].kind == K_PORT:
                before = ring_pending(self.nodes[i].tx)
                if before or (<Port>self.nodes[i].obj).tx_backlog:
                    (<Port>self.nodes[i].obj).txsync()
                    moved += before - ring_pending(self.nodes[i].tx)
        return moved

    cdef void loop(self) noexcept nogil:
        cdef int i
        cdef uint64_t progress
        cdef bint live
        while True:
            progress = 0
            live = False
            for i in range(self.n_inputs):
                if self.inputs[i].external and (self.stop or self.inputs[i].done):
                    continue
                progress += self.pull(&self.inputs[i])
                if self.inputs[i].external and not self.inputs[i].done:
                    live = True
            progress += self.sync_tx()
            self.rounds += 1
            if progress == 0:
                if not live:
                    break       # inputs exhausted (or stopped), rings drained
                self.idle_rounds += 1
                sleep_ns(IDLE_SLEEP_NS)

    def pending(self):
        """Frames still queued on tx rings, by port (after run(): lost)."""
        cdef int i
        total = {}
        for i in range(self.n_nodes):
            if self.nodes[i].kind == K_PORT:
                port = <Port>self.nodes[i].obj
                total[port.name] = ring_pending(self.nodes[i].tx)
        return total
