# AF_PACKET with mmap rings (TPACKET_V3): what packet.pyx uses of
# <linux/if_packet.h>, <sys/socket.h> and <net/if.h>. Only what is used.
#
# Ring layout (Documentation/networking/packet_mmap.rst): one mmap() of the
# socket maps the rx ring, then the tx ring. Each ring is tp_block_nr blocks
# of tp_block_size bytes.
#   rx (V3): a block holds a tpacket_block_desc, then packets one after
#     another (tpacket3_hdr, frame at tp_mac, next at tp_next_offset). The
#     kernel hands over a whole block (block_status & TP_STATUS_USER) when it
#     is full or tp_retire_blk_tov ms have passed; user space gives it back by
#     writing TP_STATUS_KERNEL.
#   tx (V3): fixed frames of tp_frame_size, tp_block_size / tp_frame_size per
#     block; a tpacket3_hdr with tp_next_offset 0, the frame at
#     TPACKET_ALIGN(sizeof(tpacket3_hdr)) (48). User space writes tp_len and
#     TP_STATUS_SEND_REQUEST, then kicks with sendto(); the kernel writes
#     TP_STATUS_AVAILABLE back once the frame's skb is freed.
from libc.stdint cimport uint16_t, uint32_t

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    enum: AF_PACKET
    enum: SOCK_RAW
    enum: SOCK_CLOEXEC
    enum: MSG_DONTWAIT
    int socket(int domain, int type, int protocol)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t len)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* len)
    int bind(int fd, const sockaddr* addr, socklen_t len)
    ssize_t sendto(int fd, const void* buf, size_t n, int flags,
                   const sockaddr* addr, socklen_t len)

cdef extern from "<net/if.h>" nogil:
    unsigned int if_nametoindex(const char* name)

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)

cdef extern from "<linux/if_ether.h>" nogil:
    enum: ETH_P_ALL

cdef extern from "<linux/if_packet.h>" nogil:
    enum: SOL_PACKET
    # socket options
    enum: PACKET_ADD_MEMBERSHIP
    enum: PACKET_RX_RING
    enum: PACKET_STATISTICS
    enum: PACKET_VERSION
    enum: PACKET_TX_RING
    enum: PACKET_LOSS
    enum: PACKET_FANOUT
    enum: PACKET_QDISC_BYPASS
    enum: PACKET_IGNORE_OUTGOING
    enum: PACKET_MR_PROMISC
    enum: PACKET_FANOUT_HASH
    enum: PACKET_FANOUT_FLAG_DEFRAG
    enum: TPACKET_V3
    # rx status (tpacket3_hdr.tp_status, block_status)
    enum: TP_STATUS_KERNEL
    enum: TP_STATUS_USER
    enum: TP_STATUS_CSUMNOTREADY   # CHECKSUM_PARTIAL: the L4 checksum is not computed yet
    enum: TP_STATUS_VLAN_VALID
    enum: TP_STATUS_VLAN_TPID_VALID
    # tx status
    enum: TP_STATUS_AVAILABLE
    enum: TP_STATUS_SEND_REQUEST
    enum: TP_STATUS_WRONG_FORMAT

    struct sockaddr_ll:
        unsigned short sll_family
        uint16_t sll_protocol       # network order
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]

    struct packet_mreq:
        int mr_ifindex
        unsigned short mr_type
        unsigned short mr_alen
        unsigned char mr_address[8]

    struct tpacket_req3:
        unsigned int tp_block_size      # a multiple of the page size
        unsigned int tp_block_nr
        unsigned int tp_frame_size      # a multiple of 16
        unsigned int tp_frame_nr        # == block_size / frame_size * block_nr
        unsigned int tp_retire_blk_tov  # rx: ms before a partly filled block is handed over
        unsigned int tp_sizeof_priv
        unsigned int tp_feature_req_word

    struct tpacket_stats_v3:
        unsigned int tp_packets
        unsigned int tp_drops
        unsigned int tp_freeze_q_cnt

    struct tpacket_hdr_variant1:
        uint32_t tp_rxhash
        uint32_t tp_vlan_tci
        uint16_t tp_vlan_tpid

    struct tpacket3_hdr:
        uint32_t tp_next_offset
        uint32_t tp_sec
        uint32_t tp_nsec
        uint32_t tp_snaplen
        uint32_t tp_len
        uint32_t tp_status
        uint16_t tp_mac
        uint16_t tp_net
        tpacket_hdr_variant1 hv1

    struct tpacket_hdr_v1:
        uint32_t block_status
        uint32_t num_pkts
        uint32_t offset_to_first_pkt

    union tpacket_bd_header_u:
        tpacket_hdr_v1 bh1

    struct tpacket_block_desc:
        uint32_t version
        uint32_t offset_to_priv
        tpacket_bd_header_u hdr


cdef enum:
    TPACKET3_DATA_OFF = 48    # TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): a tx frame's data


# The ring status words are shared with the kernel: read them with acquire and
# write them with release ordering (as the kernel's smp_rmb/smp_wmb pair).
cdef extern from *:
    """
    static inline unsigned int nmr_load_acquire(volatile unsigned int *p)
    { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void nmr_store_release(volatile unsigned int *p, unsigned int v)
    { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    uint32_t load_acquire "nmr_load_acquire"(uint32_t* p) nogil
    void store_release "nmr_store_release"(uint32_t* p, uint32_t v) nogil
