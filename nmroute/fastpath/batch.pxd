from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from nmroute.fastpath.ring cimport Slot

cdef enum:
    BATCH_MAX = 256
    OUT_DROP = 0xFFFF        # Desc.out of a dropped packet; Desc.drop says why
    OFF_NONE = 0xFFFF        # a header offset that classify did not find

# Desc.pflags, set by parse (fastpath/parse.pxd).
cdef enum:
    PF_PARSED = 0x01         # parse() ran; the offsets below are meaningful
    PF_VLAN = 0x02           # at least one 802.1Q/802.1ad tag
    PF_ARP = 0x04
    PF_IPV4 = 0x08
    PF_IPV6 = 0x10
    PF_FRAG = 0x20           # an IP fragment (any)
    PF_LATER_FRAG = 0x40     # a fragment other than the first: no L4 header
    PF_L4 = 0x80             # l4_off points at a complete TCP/UDP/ICMP/SCTP header


# One packet descriptor: one cache line.
ctypedef struct Desc:
    uint8_t* data        # the frame, in a pool buffer
    uint64_t ts          # timestamp in ns, 0 if none
    Slot* slot           # the rx slot the buffer came from; NULL: a spare from the pool
    uint32_t buf_idx
    uint32_t hash        # flow hash (0 until computed)
    uint16_t len
    uint16_t in_port     # index of the input port
    uint16_t l3_off      # header offsets set by classify, or OFF_NONE
    uint16_t l4_off
    uint16_t ethertype   # after any VLAN tags
    uint8_t l4_proto     # IP protocol / IPv6 next header of the L4 header
    uint8_t pflags       # PF_* bits
    uint16_t out         # output index chosen by the element, or OUT_DROP
    uint16_t drop        # a DropReason when out == OUT_DROP
    uint32_t mark        # user metadata (set-meta / mark)
    uint16_t vlan        # outer VLAN tag's TCI (0 when untagged)
    uint16_t inner_vlan  # inner (QinQ) tag's TCI, 0 when none
    uint16_t l3_len      # IP header + payload as the IP header says (without padding)
    uint8_t n_vlan       # tags seen: 0, 1 or 2
    uint8_t _spare
    uint32_t user        # free for an element's own use along a path


# A batch is a view: `n` descriptors starting at `d`, whose frames sit in
# buffers of `buf_size` bytes (an element that grows a frame checks it).
ctypedef struct Batch:
    Desc* d
    uint32_t n
    uint32_t buf_size


cdef inline void drop_pkt(Desc* p, uint16_t reason) noexcept nogil:
    p.out = OUT_DROP
    p.drop = reason
