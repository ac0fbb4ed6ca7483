"""Plain-Python stand-ins for the element and port classes, for config tests.

They carry the same class attributes as the Cython classes in
nmroute/fastpath (TYPE/SCHEME, OUTPUTS/DIRECTIONS, ARG, PARAMS, FANOUT,
check), so the loader can be tested without building the fast path.
`install(monkeypatch)` points nmroute.registry at them.
"""
import os

from nmroute import registry
from nmroute.errors import ParamError
from nmroute.schema import AddrRange, Choice, Float, Int, Mac, OutputPath, Param, Range, Str


class _Element:
    OUTPUTS = ("out",)
    PARAMS = ()
    FANOUT = False

    @classmethod
    def check(cls, params):
        return []


class Counter(_Element):
    TYPE = "counter"
    SUMMARY = "count packets and bytes, pass them on"


class Drop(_Element):
    TYPE = "drop"
    SUMMARY = "discard every packet"
    OUTPUTS = ()


class Tee(_Element):
    TYPE = "tee"
    SUMMARY = "send each packet to every output"
    OUTPUTS = ("out", "copy")
    FANOUT = True


class PcapTap(_Element):
    TYPE = "pcap-tap"
    SUMMARY = "write a copy of each packet to a pcap file, pass it on"
    PARAMS = (
        Param("file", OutputPath(), "the pcap file to write"),
        Param("precision", Choice("us", "ns"), "timestamp precision", "us"),
        Param("snaplen", Int(64, 65535), "bytes kept per packet", 65535),
    )


class _Prefix:
    """Like a rule-list kind: reports where in a nested value it failed (e.path)."""

    def describe(self):
        return "a list of rules"

    def convert(self, value):
        for i, rule in enumerate(value or ()):
            dst = rule.get("dst", "") if isinstance(rule, dict) else ""
            ok = isinstance(dst, str) and "/" in dst and dst.rsplit("/", 1)[1].isdigit() \
                and int(dst.rsplit("/", 1)[1]) <= 32
            if not ok:
                e = ParamError(f"expected an IPv4 prefix like 198.18.0.0/15, got {dst!r}")
                e.path = (i, "dst")
                raise e
        return list(value or ())


class Filter(_Element):
    """Not a real element (yet): exercises nested params and check()."""
    TYPE = "filter"
    SUMMARY = "pass packets that match a rule"
    OUTPUTS = ("out", "reject")
    PARAMS = (
        Param("rules", _Prefix(), "rules", ()),
        Param("default", Choice("pass", "reject"), "what no rule matches", "pass"),
    )

    @classmethod
    def check(cls, params):
        if not params["rules"] and params["default"] == "pass":
            return ["with no rules and default 'pass' the filter does nothing; remove it"]
        return []


class _Port:
    DIRECTIONS = ("rx", "tx")
    ARG = None
    PARAMS = ()

    @classmethod
    def check(cls, params, rx, tx):
        return []


class Gen(_Port):
    SCHEME = "gen"
    SUMMARY = "synthetic traffic"
    DIRECTIONS = ("rx",)
    PARAMS = (
        Param("count", Int(0), "frames to make; 0: until stopped", 0),
        Param("size", Range(42, 9216, "a frame length"), "frame length", "60"),
        Param("rate", Float(0), "frames per second; 0: as fast as possible", 0),
        Param("proto", Choice("udp", "tcp"), "transport protocol", "udp"),
        Param("family", Choice("ipv4", "ipv6"), "IP version; default: from src/dst", None),
        Param("src", AddrRange(), "source addresses", None),
        Param("dst", AddrRange(), "destination addresses", None),
        Param("sport", Range(0, 65535, "a port"), "source ports", "1234"),
        Param("dport", Range(0, 65535, "a port"), "destination ports", "1234"),
        Param("src_mac", Mac(), "source MAC", "02:00:00:00:00:01"),
        Param("dst_mac", Mac(), "destination MAC", "02:00:00:00:00:02"),
    )

    @classmethod
    def check(cls, params, rx, tx):
        family, src = params["family"], params["src"]
        if family and src and f"ipv{src[0].version}" != family:
            return [f"family {family} but addresses are IPv{src[0].version}"]
        return []


class Pcap(_Port):
    SCHEME = "pcap"
    SUMMARY = "replay (rx) or capture (tx) a pcap file"
    ARG = "file"
    PARAMS = (
        Param("file", Str(what="a file path"), "the pcap file to read or write"),
        Param("precision", Choice("us", "ns"), "timestamps written: us or ns", "us"),
        Param("snaplen", Int(64, 65535), "bytes kept of each frame written", 65535),
        Param("loop", Int(0), "times to replay the file; 0: forever", 1),
    )

    @classmethod
    def check(cls, params, rx, tx):
        path = params["file"]
        if rx and tx:
            return ["a pcap file cannot be read and written in one pipeline"]
        if rx and not os.path.isfile(path):
            return [f"file: no such file: {path!r}"]
        return []


class Sink(_Port):
    SCHEME = "sink"
    SUMMARY = "count and discard"
    DIRECTIONS = ("tx",)


class Pipe(_Port):
    SCHEME = "pipe"
    SUMMARY = "a link between two pipelines"
    ARG = "name"
    PARAMS = (Param("name", Str(r"[A-Za-z0-9_.-]+", "a pipe name"), "the pipe's name"),)


ELEMENTS = {c.TYPE: c for c in (Counter, Drop, Tee, PcapTap, Filter)}
PORTS = {c.SCHEME: c for c in (Gen, Pcap, Sink, Pipe)}


def install(monkeypatch):
    monkeypatch.setattr(registry, "element_types", lambda: ELEMENTS)
    monkeypatch.setattr(registry, "port_kinds", lambda: PORTS)
