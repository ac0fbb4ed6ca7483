"""PortSteer: an element written in Python, called once per batch."""
from nmroute.schema import Int, Mac, Param
from nmroute.fastpath.pyelement import PyElement

ETH_P_IP = b"\x08\x00"
UDP = 17


class PortSteer(PyElement):
    """IPv4/UDP packets to destination port `dport` go to `matched`, their
    destination MAC rewritten to `dst_mac`; other IPv4 packets go to `out`;
    frames that are not IPv4 are dropped (not-ip), truncated ones too
    (malformed:ipv4). Headers are read from the frame bytes; only a matched
    packet's bytes are touched.

    Outputs:
        out: other IPv4 packets
        matched: UDP to dport, destination MAC rewritten
    Counters:
        errors: batches whose process_batch raised
    Drops:
        not-ip, malformed:ipv4
    Example:
        ports: {src: "gen:count=100,dport=53", a: sink, b: sink}
        elements: {s: {type: "myelements.pyfilter:PortSteer", dport: 53}}
        links: ["src -> s -> a", "s [matched] -> b"]
    """
    TYPE = "port-steer"
    SUMMARY = "UDP to one port to `matched` with a new destination MAC"
    OUTPUTS = ("out", "matched")
    PARAMS = (
        Param("dport", Int(0, 65535), "UDP destination port to match"),
        Param("dst_mac", Mac(), "destination MAC written into matched packets",
              "02:00:00:00:00:99"),
    )

    def configure(self, dport, dst_mac):
        self.dport = dport.to_bytes(2, "big")
        self.dst_mac = dst_mac

    def process_batch(self, batch):
        outs, lengths = batch.outs, batch.lengths
        for i in range(batch.n):
            frame = batch.packet(i)
            if lengths[i] < 34 or frame[12:14] != ETH_P_IP:
                batch.drop(i, "not-ip" if lengths[i] < 14 or frame[12:14] != ETH_P_IP
                           else "malformed:ipv4")
                continue
            ihl = (frame[14] & 0x0F) * 4
            if ihl < 20 or lengths[i] < 14 + ihl + 4:
                batch.drop(i, "malformed:ipv4")
                continue
            if frame[23] == UDP and frame[14 + ihl + 2:14 + ihl + 4] == self.dport:
                frame[0:6] = self.dst_mac
                outs[i] = 1
        # Returning None: each packet goes where outs says (0 unless set).
