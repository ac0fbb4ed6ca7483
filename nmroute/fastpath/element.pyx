"""The element base class. See element.pxd for the process() contract."""
from libc.stdint cimport uint64_t, uintptr_t
from libc.stdlib cimport calloc, free

from nmroute.fastpath.lib.tables import Tables


cdef class Element:
    TYPE = None        # the name used in YAML
    SUMMARY = ""
    OUTPUTS = ("out",)
    PARAMS = ()
    FANOUT = False     # True: every packet goes to every output (copies)
    COUNTERS = ()      # names of the element's own counters (self.stats[i])

    def __init__(self, str name, dict params=None, tables=None):
        self.name = name
        self.params = dict(params or {})
        self.tables = tables if tables is not None else Tables()
        self.output_names = tuple(type(self).outputs(self.params))
        self.configure(**self.params)

    def __cinit__(self, *args, **kwargs):
        # Private storage until the executor points stats into shared memory.
        self._own_stats = <uint64_t*>calloc(len(type(self).COUNTERS) or 1, sizeof(uint64_t))
        self.stats = self._own_stats

    def __dealloc__(self):
        free(self._own_stats)

    def configure(self, **params):
        """Turn params into C state. Called once, before any port opens."""
        if params:
            raise TypeError(f"{type(self).TYPE} takes no params, got {sorted(params)}")

    def close(self):
        """Release files and the like at the end of a run."""

    def bind_counters(self, uintptr_t addr):
        """Point the own counters at shared memory (copying what they hold)."""
        cdef uint64_t* p = <uint64_t*>addr
        cdef Py_ssize_t i
        for i in range(len(type(self).COUNTERS)):
            p[i] = self.stats[i]
        self.stats = p

    def counters(self):
        """The element's own counters, by name."""
        return {n: self.stats[i] for i, n in enumerate(type(self).COUNTERS)}

    @classmethod
    def check(cls, params):
        """Cross-parameter checks: a list of messages, empty when fine."""
        return []

    @classmethod
    def outputs(cls, params):
        """Output names. An element whose outputs depend on its params (one
        per rule, N for a balancer) overrides this; OUTPUTS is then what the
        reference shows."""
        return cls.OUTPUTS

    @classmethod
    def port_refs(cls, params):
        """[(where, port name)]: input ports named in params (e.g. a rule's
        in_port), checked by the loader against the pipeline's rx ports."""
        return []

    def bind_ports(self, dict port_ids):
        """Called once the ports are open, with {input port name: Desc.in_port
        value} of the element's pipeline: turn names in params into indexes."""

    @classmethod
    def files(cls, params):
        """[(path, 'read' or 'written')]: by default every InputPath and
        OutputPath param (see Port.files)."""
        out = []
        for p in cls.PARAMS:
            mode = {"InputPath": "read", "OutputPath": "written"}.get(type(p.kind).__name__)
            if mode and params.get(p.name):
                out.append((params[p.name], mode))
        return out

    cdef int process(self, Batch* b) noexcept nogil:
        return 0
