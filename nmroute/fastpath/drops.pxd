# The one table of drop reasons. Every dropped packet is counted under one of
# these, per element or per port; `rx == tx + drops` is checked against them.
# A reason's name is its member name without DROP_, lower case, '_' -> '-',
# and MALFORMED_X -> 'malformed:x'. Append only: the numbers are counter slots.

cpdef enum DropReason:
    DROP_NONE = 0
    DROP_DROP = 1              # a `drop` element, or an output wired to drop
    DROP_OVERSIZE = 2          # frame longer than a pool buffer
    DROP_NO_BUFFER = 3         # pool exhausted when a copy was needed (tee)
    DROP_TX_FULL = 4           # tx ring full and the input could not be held back
    DROP_SHUTDOWN = 5          # still queued in a ring when the run stopped
    DROP_IO_ERROR = 6          # write to a file failed
    DROP_TRUNCATED = 7         # shorter than the headers it claims
    DROP_MALFORMED = 8         # header fields that make no sense
    DROP_BAD_OUTPUT = 9        # an element chose an output it does not have (its bug)
    DROP_MALFORMED_ETH = 10    # shorter than an Ethernet header
    DROP_MALFORMED_VLAN = 11   # truncated tag, or more than two tags
    DROP_MALFORMED_ARP = 12    # truncated ARP
    DROP_MALFORMED_IPV4 = 13   # version, IHL, total length or truncation
    DROP_MALFORMED_IPV6 = 14   # truncated header, payload length, extension chain
    DROP_MALFORMED_L4 = 15     # TCP/UDP/ICMP/SCTP header truncated or bad offset
    DROP_NOT_IP = 16           # an element that needs IP got something else
    DROP_TTL_EXPIRED = 17      # TTL / hop limit reached zero
    DROP_BAD_CHECKSUM = 18     # IPv4 header checksum wrong
    DROP_DENIED = 19           # an ACL rule said deny
    DROP_POLICED = 20          # over a token bucket's rate
    DROP_NO_ROUTE = 21         # no route matched
    DROP_NO_NEIGHBOR = 22      # next hop's MAC unknown (resolution pending)
    DROP_NAT_NO_PORT = 23      # NAPT port pool exhausted
    DROP_NAT_NO_MAPPING = 24   # a packet for a translation that does not exist
    DROP_TABLE_FULL = 25       # a connection/flow table had no room
    DROP_SAMPLED_OUT = 26      # not picked by `sample`
    DROP_SAME_PORT = 27        # an L2 switch never sends back out the input port
    DROP_FRAGMENT = 28         # a non-first fragment where L4 headers are needed
    DROP_ELEMENT_ERROR = 29    # an element's own code failed (a Python element raised)
    DROP_LINK_DOWN = 30        # sent to a port whose link is down or whose interface is gone

# Counter slots reserved per element and per port; reasons must stay below it.
cdef enum:
    N_DROP_REASONS = 48
