"""sample: passes one packet in N; the others are dropped or sent to `rest`."""
from libc.stdint cimport uint32_t

from nmroute.schema import Bool, Int, Param

from nmroute.fastpath.batch cimport Batch, drop_pkt
from nmroute.fastpath.drops cimport DROP_SAMPLED_OUT
from nmroute.fastpath.element cimport Element, PER_PACKET


cdef class Sample(Element):
    """Passes one packet in `n`: the n-th, 2n-th, 3n-th ... packet since the
    start (counted over every packet the element receives, across batches),
    so that of M packets exactly M // n pass. The others are dropped
    (reason sampled-out), or, with `rest: true`, sent to output `rest`.

    Outputs:
        out: one packet in n
        rest: the others (only with `rest: true`)
    Params:
        n: keep one packet in n (1 keeps all)
        rest: send the packets not picked to `rest` instead of dropping them
    Counters:
        (none: the executor counts each output and the drops)
    Drops:
        sampled-out: not picked (without `rest`)
    Example:
        ports: {src: "gen:count=1000", dst: sink}
        elements: {s: {type: sample, n: 10}}
        links: ["src -> s -> dst"]
    """
    TYPE = "sample"
    SUMMARY = "pass one packet in N; drop the rest or send it to `rest`"
    OUTPUTS = ("out", "rest")
    PARAMS = (
        Param("n", Int(1, 1 << 31), "keep one packet in n"),
        Param("rest", Bool(), "send the packets not picked to output `rest`", False),
    )

    cdef uint32_t n
    cdef uint32_t left        # packets still to skip before the next pick
    cdef bint rest

    @classmethod
    def outputs(cls, params):
        return ("out", "rest") if params.get("rest") else ("out",)

    def configure(self, n, rest=False):
        self.n = n
        self.left = n - 1
        self.rest = rest

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i, left = self.left, n = self.n
        cdef bint rest = self.rest
        if n == 1:
            return 0
        for i in range(b.n):
            if left == 0:
                b.d[i].out = 0
                left = n - 1
            else:
                left -= 1
                if rest:
                    b.d[i].out = 1
                else:
                    drop_pkt(&b.d[i], DROP_SAMPLED_OUT)
        self.left = left
        return PER_PACKET
