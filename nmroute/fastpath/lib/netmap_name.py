"""netmap's own port-name grammar, as libnetmap's ``nmport_open`` reads it.

    netmap:VPNAME[MODE][OPTIONS]        a NIC, a pipe of it, its host rings
    vale[ID]:VPNAME[MODE][OPTIONS]      a port of VALE switch 'vale[ID]'

VPNAME is an identifier (letters, digits, '_'), or ``ID1{ID2`` / ``ID1}ID2``:
pipe ID2 of port ID1, master ('{') or slave ('}') end. MODE, in this order:

    (none)   every NIC ring pair              NR_REG_ALL_NIC
    ^        every host ring pair             NR_REG_SW
    ^N       host ring pair N                 NR_REG_ONE_SW
    *        NIC and host ring pairs          NR_REG_NIC_SW
    -N       NIC ring pair N                  NR_REG_ONE_NIC
    @N       use memory region N (N > 0)
    /FLAGS   any of: x exclusive, R rx rings only, T tx rings only,
             t r z monitor the port's tx / rx / both (zero-copy)

OPTIONS start at the first '@' not followed by a digit: ``@conf:KEY=N,...``
(keys rings, tx-rings, rx-rings, host-rings, host-tx-rings, host-rx-rings,
slots, tx-slots, rx-slots; ``@conf=N`` sets rings), honoured only by ports the
open creates (pipes, VALE ports). netmap's @share, @extmem and @offset are not
supported by nmroute.

The kernel is given the name without the ``netmap:`` prefix (``eth0``,
``x{1``), and VALE names whole (``vale0:p1``): registering ``netmap:x{1``
fails with ENXIO. Errors raise ParamError with ``offset``, the 0-based
position in the text where the problem is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from nmroute.errors import ParamError
from nmroute.schema import did_you_mean

# nmreq_register.nr_mode and nr_flags values (kernel/netmap.h; a test checks
# that these match the C declarations the port is built with).
NR_REG_ALL_NIC = 1
NR_REG_SW = 2
NR_REG_NIC_SW = 3
NR_REG_ONE_NIC = 4
NR_REG_ONE_SW = 8
NR_MONITOR_TX = 0x100
NR_MONITOR_RX = 0x200
NR_ZCOPY_MON = 0x400
NR_EXCLUSIVE = 0x800
NR_RX_RINGS_ONLY = 0x2000
NR_TX_RINGS_ONLY = 0x4000

RING_MASK = 0x0FFF          # a ring number is below this
REQ_NAME_MAX = 63           # nmreq_header.nr_name holds 64 bytes with the NUL

FLAGS = {"x": NR_EXCLUSIVE, "R": NR_RX_RINGS_ONLY, "T": NR_TX_RINGS_ONLY,
         "t": NR_MONITOR_TX, "r": NR_MONITOR_RX, "z": NR_ZCOPY_MON}
MODE_NAMES = {NR_REG_ALL_NIC: "all NIC rings", NR_REG_SW: "all host rings",
              NR_REG_NIC_SW: "NIC and host rings", NR_REG_ONE_NIC: "NIC ring",
              NR_REG_ONE_SW: "host ring"}

# @conf keys -> the fields they set; a more specific key wins.
CONF_KEYS = {
    "rings": ("tx_rings", "rx_rings"),
    "host-rings": ("host_tx_rings", "host_rx_rings"),
    "slots": ("tx_slots", "rx_slots"),
    "tx-rings": ("tx_rings",), "rx-rings": ("rx_rings",),
    "host-tx-rings": ("host_tx_rings",), "host-rx-rings": ("host_rx_rings",),
    "tx-slots": ("tx_slots",), "rx-slots": ("rx_slots",),
}
UNSUPPORTED_OPTIONS = ("share", "extmem", "offset")

_IDENT = re.compile(r"[A-Za-z0-9_]*")
_VALE = re.compile(r"vale([A-Za-z0-9_]*):")
_PREFIX = "netmap:"


@dataclass(frozen=True)
class Conf:
    """Ring and slot counts asked for with @conf (0: netmap chooses)."""
    tx_rings: int = 0
    rx_rings: int = 0
    host_tx_rings: int = 0
    host_rx_rings: int = 0
    tx_slots: int = 0
    rx_slots: int = 0


@dataclass(frozen=True)
class NetmapName:
    """A parsed netmap port name: what goes into nmreq_header/nmreq_register."""
    text: str                 # as written, 'netmap:eth0-1/R'
    kernel_name: str          # nmreq_header.nr_name: 'eth0', 'x{1', 'vale0:p1'
    mode: int = NR_REG_ALL_NIC
    ringid: int = 0           # the ring of NR_REG_ONE_NIC / NR_REG_ONE_SW
    flags: int = 0            # NR_* flags
    mem_id: int = 0           # 0: netmap chooses
    conf: Conf = Conf()

    @property
    def vale(self) -> bool:
        return _VALE.match(self.text) is not None

    @property
    def pipe(self) -> str | None:
        """'{' (master end) or '}' (slave end) for a netmap pipe, else None."""
        for c in "{}":
            if c in self.kernel_name:
                return c
        return None

    @property
    def can_rx(self) -> bool:
        return not self.flags & NR_TX_RINGS_ONLY

    @property
    def can_tx(self) -> bool:
        """Monitors and /R ports bind no tx ring."""
        return not self.flags & (NR_RX_RINGS_ONLY | NR_MONITOR_TX | NR_MONITOR_RX
                                 | NR_ZCOPY_MON)

    def describe(self) -> str:
        what = MODE_NAMES[self.mode]
        if self.mode in (NR_REG_ONE_NIC, NR_REG_ONE_SW):
            what += f" {self.ringid}"
        return f"{self.kernel_name}: {what}"


def _error(text: str, message: str, offset: int) -> ParamError:
    e = ParamError(f"netmap port name {text!r}: {message}")
    e.offset = offset
    return e


def parse(text: str) -> NetmapName:
    """Parse a full netmap port name ('netmap:eth0^', 'vale0:p1', 'netmap:x{1')."""
    if not isinstance(text, str):
        raise _error(str(text), "expected a string", 0)
    m = _VALE.match(text)
    if m:
        start = name_start = m.end()       # the kernel name keeps 'valeX:'
        kernel_from = 0
    elif text.startswith(_PREFIX):
        start = name_start = kernel_from = len(_PREFIX)
    else:
        raise _error(text, "expected 'netmap:NAME' or 'valeX:NAME'", 0)

    # VPNAME, up to the first mode character.
    i = start
    n = len(text)
    while i < n and text[i] not in "-*^/@":
        i += 1
    vp = text[name_start:i]
    brace = next((k for k, c in enumerate(vp) if c in "{}"), None)
    first = vp if brace is None else vp[:brace]
    if not first:
        raise _error(text, "the port name is empty", name_start)
    bad = _first_bad(first)
    if bad is not None:
        raise _error(text, f"{first!r} is not a netmap port name (letters, digits and "
                           f"'_' only; '{first[bad]}' is not allowed)", name_start + bad)
    if brace is not None:
        pipe = vp[brace + 1:]
        at = name_start + brace + 1
        if not pipe:
            raise _error(text, f"expected a pipe name after '{vp[brace]}'", at)
        bad = _first_bad(pipe)
        if bad is not None:
            raise _error(text, f"{pipe!r} is not a pipe name (letters, digits and '_' "
                               f"only; '{pipe[bad]}' is not allowed)", at + bad)
    kernel_name = text[kernel_from:i]
    if len(kernel_name.encode()) > REQ_NAME_MAX:
        raise _error(text, f"the name is longer than {REQ_NAME_MAX} bytes", kernel_from)

    mode, ringid, flags, mem_id = NR_REG_ALL_NIC, 0, 0, 0
    state = "start"       # start -> after_mode -> flags -> ...; options end it
    while i < n:
        c = text[i]
        if c == "@" and i + 1 < n and text[i + 1].isdigit():
            if mem_id:
                raise _error(text, "the memory region (@N) is given twice", i)
            mem_id, i = _number(text, i + 1, "a memory region number")
            if mem_id == 0:
                raise _error(text, "memory region 0 does not exist (use 1 or more)", i - 1)
            state = "after_mode"
            continue
        if c == "@":
            conf = _options(text, i)
            return NetmapName(text, kernel_name, mode, ringid, flags, mem_id, conf)
        if c == "/":
            if i + 1 >= n or text[i + 1] == "@":
                raise _error(text, "expected flags after '/' (x, R, T, t, r, z)", i + 1)
            i += 1
            while i < n and text[i] != "@":
                f = FLAGS.get(text[i])
                if f is None:
                    raise _error(text, f"unknown flag '{text[i]}' (flags are x exclusive, "
                                       f"R rx only, T tx only, t/r/z monitor)", i)
                flags |= f
                i += 1
            state = "flags"
            continue
        if state != "start":
            raise _error(text, f"unexpected '{c}' (after the ring selection only "
                               f"/FLAGS and @OPTIONS may follow)", i)
        if c == "^":
            mode = NR_REG_SW
            i += 1
            if i < n and text[i].isdigit():
                mode = NR_REG_ONE_SW
                ringid, i = _number(text, i, "a host ring number")
                _check_ring(text, ringid, i)
        elif c == "*":
            mode = NR_REG_NIC_SW
            i += 1
        elif c == "-":
            if i + 1 >= n or not text[i + 1].isdigit():
                raise _error(text, "expected a ring number after '-'", i + 1)
            mode = NR_REG_ONE_NIC
            ringid, i = _number(text, i + 1, "a ring number")
            _check_ring(text, ringid, i)
        state = "after_mode"
    if flags & NR_RX_RINGS_ONLY and flags & NR_TX_RINGS_ONLY:
        raise _error(text, "flags R (rx only) and T (tx only) exclude each other",
                     text.index("/"))
    return NetmapName(text, kernel_name, mode, ringid, flags, mem_id)


def _first_bad(ident: str) -> int | None:
    m = _IDENT.match(ident)
    return None if m.end() == len(ident) else m.end()


def _number(text: str, i: int, what: str) -> tuple[int, int]:
    j = i
    while j < len(text) and text[j].isdigit():
        j += 1
    if j == i:
        raise _error(text, f"expected {what}", i)
    return int(text[i:j]), j


def _check_ring(text: str, ring: int, end: int) -> None:
    if ring >= RING_MASK:
        raise _error(text, f"ring {ring} is out of range (0 to {RING_MASK - 1})",
                     end - len(str(ring)))


def _options(text: str, i: int) -> Conf:
    """@OPTION[=VALUE | :KEY=VALUE,...] ... from text[i] ('@') to the end."""
    fields: dict[str, tuple[int, int]] = {}     # field -> (value, specificity)
    seen_opts = set()
    while i < len(text):
        j = text.find("@", i + 1)
        j = len(text) if j < 0 else j
        body = text[i + 1:j]
        if not body:
            raise _error(text, "empty option after '@'", i + 1)
        name = re.match(r"[^:=]*", body).group(0)
        if name in seen_opts:
            raise _error(text, f"option '@{name}' is given twice", i)
        seen_opts.add(name)
        if name in UNSUPPORTED_OPTIONS:
            raise _error(text, f"netmap's option '@{name}' is not supported by nmroute", i)
        if name != "conf":
            raise _error(text, f"unknown option '@{name}'{did_you_mean(name, ['conf'])}", i)
        rest = body[len(name):]
        base = i + 1 + len(name) + 1          # offset of what follows ':' or '='
        if not rest:
            raise _error(text, "expected '@conf=N' or '@conf:KEY=N,...'", i + 1 + len(name))
        if rest[0] == "=":
            pairs = [("rings", rest[1:], base)]
        else:
            pairs = []
            at = base
            for part in rest[1:].split(","):
                key, eq, value = part.partition("=")
                if not eq:
                    raise _error(text, f"expected KEY=N in @conf, got {part!r}", at)
                pairs.append((key, value, at + len(key) + 1))
                at += len(part) + 1
        keys = set()
        for key, value, at in pairs:
            if key in keys:
                raise _error(text, f"@conf key '{key}' is given twice", at - len(key) - 1)
            keys.add(key)
            targets = CONF_KEYS.get(key)
            if targets is None:
                raise _error(text, f"unknown @conf key '{key}'{did_you_mean(key, CONF_KEYS)}",
                             at - len(key) - 1)
            if not value.isdigit():
                raise _error(text, f"@conf {key}: expected a number, got {value!r}", at)
            for t in targets:
                spec = 1 if len(targets) == 1 else 0
                if t not in fields or fields[t][1] <= spec:
                    fields[t] = (int(value), spec)
        i = j
    return Conf(**{k: v for k, (v, _s) in fields.items()})
