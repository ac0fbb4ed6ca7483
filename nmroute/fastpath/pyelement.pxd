from libc.stdint cimport uint64_t

from nmroute.fastpath.batch cimport Batch, Desc
from nmroute.fastpath.element cimport Element


cdef class BatchView:
    """What a Python element's process_batch() sees: one batch, valid only
    during that call."""
    cdef Batch* b
    cdef readonly int n_outputs
    cdef object _lengths, _outs, _in_ports, _marks
    cdef list _packets         # memoryviews made by packet(i), released after the call

    cdef void attach(self, Batch* b)
    cdef void detach(self)
    cdef Batch* batch(self) except NULL
    cdef Desc* desc(self, Py_ssize_t i) except NULL


cdef class PyElement(Element):
    cdef object _fn            # type(self).process_batch, looked up once
    cdef BatchView _view
    cdef double _next_log      # time.monotonic() before which errors are not logged
    cdef uint64_t _unlogged    # errors since the last log line

    cdef int call_user(self, Batch* b) noexcept with gil
    cdef void user_failed(self, object e, Batch* b)
