# The netmap kernel ABI (API 14): what ports/netmap.pyx uses of
# kernel/netmap.h, our declarations of netmap's documented structs (see that
# header for the region's layout and the static asserts that pin it). The
# .pyx that cimports this needs kernel/ on its include path.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "netmap.h" nogil:
    enum: NMR_API
    enum: NMR_REQ_IFNAMSIZ
    enum: NMR_REQ_REGISTER
    enum: NMR_REG_ALL_NIC
    enum: NMR_REG_SW
    enum: NMR_REG_NIC_SW
    enum: NMR_REG_ONE_NIC
    enum: NMR_REG_ONE_SW
    enum: NMR_MONITOR_TX
    enum: NMR_MONITOR_RX
    enum: NMR_ZCOPY_MON
    enum: NMR_EXCLUSIVE
    enum: NMR_RX_RINGS_ONLY
    enum: NMR_TX_RINGS_ONLY
    enum: NMR_NS_BUF_CHANGED
    enum: NMR_NS_MOREFRAG
    unsigned long NMR_NIOCCTRL
    unsigned long NMR_NIOCTXSYNC
    unsigned long NMR_NIOCRXSYNC

    struct nmr_slot:
        uint32_t buf_idx
        uint16_t len
        uint16_t flags
        uint64_t ptr

    struct nmr_ring:
        int64_t buf_ofs
        uint32_t num_slots
        uint32_t nr_buf_size
        uint16_t ringid
        uint16_t dir
        uint32_t head
        uint32_t cur
        uint32_t tail
        uint32_t flags
        nmr_slot slot[1]     # a flexible array in C: num_slots of them

    struct nmr_if:
        char ni_name[16]
        uint32_t ni_tx_rings
        uint32_t ni_rx_rings
        uint32_t ni_host_tx_rings
        uint32_t ni_host_rx_rings
        ssize_t ring_ofs[1]  # a flexible array in C

    struct nmr_header:
        uint16_t nr_version
        uint16_t nr_reqtype
        uint32_t nr_reserved
        char nr_name[64]
        uint64_t nr_options
        uint64_t nr_body

    struct nmr_register:
        uint64_t nr_offset
        uint64_t nr_memsize
        uint32_t nr_tx_slots
        uint32_t nr_rx_slots
        uint16_t nr_tx_rings
        uint16_t nr_rx_rings
        uint16_t nr_host_tx_rings
        uint16_t nr_host_rx_rings
        uint16_t nr_mem_id
        uint16_t nr_ringid
        uint32_t nr_mode
        uint32_t nr_extra_bufs
        uint64_t nr_flags

    # Layout numbers for the test that checks them against the C compiler.
    size_t NMR_SIZEOF_SLOT "sizeof(struct nmr_slot)"
    size_t NMR_SIZEOF_RING "sizeof(struct nmr_ring)"
    size_t NMR_SIZEOF_IF "sizeof(struct nmr_if)"
    size_t NMR_SIZEOF_HEADER "sizeof(struct nmr_header)"
    size_t NMR_SIZEOF_REGISTER "sizeof(struct nmr_register)"
    size_t NMR_OFS_RING_HEAD "offsetof(struct nmr_ring, head)"
    size_t NMR_OFS_RING_TAIL "offsetof(struct nmr_ring, tail)"
    size_t NMR_OFS_RING_SLOT "offsetof(struct nmr_ring, slot)"
    size_t NMR_OFS_IF_RING_OFS "offsetof(struct nmr_if, ring_ofs)"
    size_t NMR_OFS_IF_HOST_TX "offsetof(struct nmr_if, ni_host_tx_rings)"
    size_t NMR_OFS_REG_MODE "offsetof(struct nmr_register, nr_mode)"
    size_t NMR_OFS_REG_FLAGS "offsetof(struct nmr_register, nr_flags)"
    size_t NMR_OFS_HDR_BODY "offsetof(struct nmr_header, nr_body)"

cdef extern from "<sys/ioctl.h>" nogil:
    int ioctl(int fd, unsigned long request, ...)
