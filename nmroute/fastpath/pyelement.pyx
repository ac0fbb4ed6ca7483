"""PyElement: the base of an element written in Python, called once per batch.

A Python element is a plain Python class::

    from nmroute.fastpath.pyelement import PyElement

    class Even(PyElement):
        OUTPUTS = ("even", "odd")

        def process_batch(self, batch):
            outs, lengths = batch.outs, batch.lengths
            for i in range(batch.n):
                outs[i] = lengths[i] & 1

PyElement.process() is the usual nogil process(): it presets every packet to
output 0 (drop reason `drop`), takes the GIL once for the whole batch and
calls ``process_batch(self, batch)`` with a BatchView. The view gives the
batch as memoryviews straight over the descriptors (no copies, no Python
object per packet unless packet(i) is asked for):

    batch.n            packets in the batch
    batch.lengths      uint16 per packet, read-only: frame lengths
    batch.in_ports     uint16 per packet, read-only: input port index
    batch.outs         uint16 per packet, writable: output index, or batch.DROP
    batch.marks        uint32 per packet, writable: the `mark` metadata
    batch.packet(i)    a writable memoryview of packet i's frame (its length
                       cannot change)
    batch.drop(i, reason="drop")   drop packet i under a reason of drops.pxd
                       ('drop', 'denied', 'malformed:ipv4', ...)

process_batch returns None (each packet goes where batch.outs says) or an
output index (every packet goes there; outs and drop() are then ignored).

The memoryviews a view gives are valid during the call only: afterwards they
are released and raise on use. The view itself is reused for the next batch
(outside a call it raises on use): keep neither.

When process_batch raises (or returns something that is not None or an
output index), the element's `errors` counter goes up by one, every packet of
that batch is dropped under ERROR_REASON, and a warning is logged, at most
once per second (the line says how many errors it stands for).
"""
import difflib
import time

import structlog

from cpython.buffer cimport PyBUF_WRITE
from cpython.memoryview cimport PyMemoryView_FromBuffer, PyMemoryView_FromMemory
from libc.stdint cimport uint32_t
from libc.string cimport memset

from nmroute.fastpath.batch cimport Batch, Desc, OUT_DROP, drop_pkt
from nmroute.fastpath.drops cimport DROP_DROP, DROP_ELEMENT_ERROR
from nmroute.fastpath.element cimport PER_PACKET

from nmroute.fastpath.drops import reason_names

log = structlog.get_logger("nmroute")

# The reason a failed batch's packets are dropped under.
ERROR_REASON = DROP_ELEMENT_ERROR

_REASONS = {name: code for code, name in reason_names().items() if code}
_ERROR_NAME = reason_names()[ERROR_REASON]

cdef const char* _FMT_U16 = b"H"
cdef const char* _FMT_U32 = b"I"


cdef object _field(void* first, Py_ssize_t n, const char* fmt, Py_ssize_t size,
                   bint writable):
    """A 1-D memoryview of one field of each descriptor (stride sizeof(Desc))."""
    cdef Py_buffer buf
    cdef Py_ssize_t shape = n
    cdef Py_ssize_t stride = sizeof(Desc)
    memset(&buf, 0, sizeof(buf))
    buf.buf = first
    buf.len = n * size
    buf.itemsize = size
    buf.readonly = not writable
    buf.ndim = 1
    buf.format = <char*>fmt
    buf.shape = &shape         # copied by PyMemoryView_FromBuffer
    buf.strides = &stride
    return PyMemoryView_FromBuffer(&buf)


cdef void _release(object mv):
    try:
        mv.release()
    except BufferError:        # the user holds an export of it (bytes() does not)
        pass


cdef class BatchView:
    """One batch as process_batch() sees it. See the module docstring."""
    DROP = OUT_DROP            # batch.outs[i] = batch.DROP drops under 'drop'

    def __cinit__(self):
        self.b = NULL
        self._packets = []

    cdef void attach(self, Batch* b):
        self.b = b

    cdef void detach(self):
        self.b = NULL
        for mv in (self._lengths, self._outs, self._in_ports, self._marks):
            if mv is not None:
                _release(mv)
        self._lengths = self._outs = self._in_ports = self._marks = None
        for mv in self._packets:
            _release(mv)
        self._packets.clear()

    cdef Batch* batch(self) except NULL:
        if self.b == NULL:
            raise ValueError("this batch view was used after its process_batch() returned")
        return self.b

    cdef Desc* desc(self, Py_ssize_t i) except NULL:
        cdef Batch* b = self.batch()
        if not 0 <= i < b.n:
            raise IndexError(f"packet {i} is not in this batch of {b.n}")
        return &b.d[i]

    @property
    def n(self):
        return self.batch().n

    @property
    def lengths(self):
        cdef Batch* b = self.batch()
        if self._lengths is None:
            self._lengths = _field(&b.d[0].len, b.n, _FMT_U16, 2, False)
        return self._lengths

    @property
    def in_ports(self):
        cdef Batch* b = self.batch()
        if self._in_ports is None:
            self._in_ports = _field(&b.d[0].in_port, b.n, _FMT_U16, 2, False)
        return self._in_ports

    @property
    def outs(self):
        cdef Batch* b = self.batch()
        if self._outs is None:
            self._outs = _field(&b.d[0].out, b.n, _FMT_U16, 2, True)
        return self._outs

    @property
    def marks(self):
        cdef Batch* b = self.batch()
        if self._marks is None:
            self._marks = _field(&b.d[0].mark, b.n, _FMT_U32, 4, True)
        return self._marks

    def packet(self, Py_ssize_t i):
        """Packet i's frame as a writable memoryview of its length."""
        cdef Desc* p = self.desc(i)
        mv = PyMemoryView_FromMemory(<char*>p.data, p.len, PyBUF_WRITE)
        self._packets.append(mv)
        return mv

    def drop(self, Py_ssize_t i, str reason="drop"):
        """Drop packet i, counted under `reason` (a name from drops.pxd)."""
        cdef Desc* p = self.desc(i)
        code = _REASONS.get(reason)
        if code is None:
            close = difflib.get_close_matches(reason, list(_REASONS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown drop reason {reason!r}{hint}")
        drop_pkt(p, code)


cdef class PyElement(Element):
    """The base of an element written in Python: subclass it and define
    process_batch(self, batch). See this module's docstring.

    Outputs:
        out: every packet, unless the subclass declares OUTPUTS
    Counters:
        errors: batches whose process_batch() raised or returned a bad value
    Drops:
        what process_batch chooses; element-error for every packet of a batch
        whose process_batch() failed
    """
    TYPE = None                # a subclass may name itself; else its import path
    SUMMARY = "an element written in Python"
    OUTPUTS = ("out",)
    PARAMS = ()
    COUNTERS = ("errors",)     # a subclass keeps these as they are

    def __cinit__(self, *args, **kwargs):
        self._fn = type(self).process_batch
        self._view = BatchView()
        self._next_log = 0.0
        self._unlogged = 0

    def configure(self, **params):
        """Keep the params as attributes (self.NAME); override to do more."""
        for k, v in params.items():
            setattr(self, k, v)

    def process_batch(self, batch):
        """Choose each packet's output (batch.outs) or drop it; return None,
        or an output index for the whole batch."""
        raise NotImplementedError(f"{type(self).__name__} does not define process_batch()")

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            b.d[i].out = 0
            b.d[i].drop = DROP_DROP
        return self.call_user(b)

    cdef int call_user(self, Batch* b) noexcept with gil:
        cdef int k = PER_PACKET
        self._view.attach(b)
        try:
            r = self._fn(self, self._view)
            if r is not None:
                n_out = len(self.output_names)
                if type(r) is not int or not 0 <= r < n_out:
                    raise ValueError(f"process_batch() returned {r!r}; expected None or an "
                                     f"output index from 0 to {n_out - 1}")
                k = r
        except BaseException as e:
            self.user_failed(e, b)
            k = PER_PACKET
        finally:
            self._view.detach()
        return k

    cdef void user_failed(self, object e, Batch* b):
        """Count, drop the batch, and log at most once a second."""
        cdef uint32_t i
        self.stats[0] += 1
        for i in range(b.n):
            drop_pkt(&b.d[i], ERROR_REASON)
        self._unlogged += 1
        now = time.monotonic()
        if now < self._next_log:
            return
        self._next_log = now + 1.0
        where, tb = "", e.__traceback__
        while tb is not None:
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
            tb = tb.tb_next
        log.warning("process_batch() failed; its batch was dropped", element=self.name,
                    error=f"{type(e).__name__}: {e}", at=where,
                    errors_since_last_line=self._unlogged, dropped_as=_ERROR_NAME)
        self._unlogged = 0
