"""pcap-tap: writes a copy of every packet to a pcap file, passes it on."""
from libc.stdint cimport uint32_t

from nmroute.schema import Param, OutputPath, Choice, Int

from nmroute.fastpath.batch cimport Batch
from nmroute.fastpath.element cimport Element
from nmroute.fastpath.pcapfile cimport PcapWriter


cdef class PcapTap(Element):
    """Writes a copy of every packet that passes to a pcap file, at this
    point of the graph, and passes the packet on unchanged.

    Outputs:
        out: every packet
    Counters:
        written: records written; errors: records that failed to write
    Drops:
        (none: a failed write is counted, the packet still goes on)
    Example:
        ports: {src: "gen:count=10", dst: sink}
        elements: {tap: {type: pcap-tap, file: /tmp/nmroute-example-tap.pcap}}
        links: ["src -> tap -> dst"]
    """
    TYPE = "pcap-tap"
    SUMMARY = "write a copy of every packet to a pcap file"
    OUTPUTS = ("out",)
    PARAMS = (
        Param("file", OutputPath(), "the pcap file to write"),
        Param("precision", Choice("us", "ns"), "timestamp precision", "us"),
        Param("snaplen", Int(64, 65535), "bytes kept of each packet", 65535),
    )
    COUNTERS = ("written", "errors")

    cdef PcapWriter writer

    def configure(self, file, precision="us", snaplen=65535):
        self.writer = PcapWriter(file, precision == "ns", snaplen)

    def close(self):
        if self.writer is not None:
            self.writer.close()

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            if self.writer.write(b.d[i].data, b.d[i].len, b.d[i].ts) == 0:
                self.stats[0] += 1
            else:
                self.stats[1] += 1
        return 0
