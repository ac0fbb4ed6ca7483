/*
 * The netmap kernel ABI as nmroute uses it (API version 14, the NIOCCTRL
 * request API), written for nmroute from netmap's documented ABI
 * (sys/net/netmap.h, sys/net/netmap_user.h, netmap(4)). Only what
 * nmroute/fastpath/ports/netmap.pyx uses; field names are netmap's, so that
 * netmap's documentation reads on them. Every layout nmroute depends on is
 * pinned by the static asserts at the end (x86-64 / aarch64, LP64), and
 * tests/test_netmap.py checks the same numbers through the built module.
 *
 * The shared region (mmap of /dev/netmap after NETMAP_REQ_REGISTER):
 *
 *   region + nr_offset          struct nmr_if (one per file descriptor)
 *     .ring_ofs[]               offsets of the rings from the nmr_if, in the
 *                               order: NIC tx (ni_tx_rings), host tx
 *                               (ni_host_tx_rings), NIC rx (ni_rx_rings),
 *                               host rx (ni_host_rx_rings); 0 for a ring
 *                               this descriptor did not bind
 *   ring = (char *)nifp + ring_ofs[i]    struct nmr_ring, then num_slots
 *                                        struct nmr_slot
 *   buffer b of a ring = (char *)ring + buf_ofs + b * nr_buf_size
 *
 * Ring ownership: user space owns [head, tail) (rx: frames received; tx:
 * free slots), the kernel owns [tail, head). The kernel moves tail only
 * inside NIOCTXSYNC / NIOCRXSYNC (or poll) on this descriptor; user space
 * moves head and cur, then syncs to hand slots over.
 */
#ifndef NMROUTE_KERNEL_NETMAP_H
#define NMROUTE_KERNEL_NETMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <sys/types.h>

#define NMR_API              14      /* nmreq_header.nr_version */
#define NMR_REQ_IFNAMSIZ     64      /* nmreq_header.nr_name */
#define NMR_IF_NAMSIZ        16      /* netmap_if.ni_name (IFNAMSIZ) */
#define NMR_RING_MASK        0x0fff  /* largest ring id + 1 in a port name */

/* nmreq_header.nr_reqtype */
#define NMR_REQ_REGISTER     1
#define NMR_REQ_PORT_INFO_GET 2

/* nmreq_register.nr_mode: which rings a descriptor binds */
#define NMR_REG_ALL_NIC      1       /* every NIC ring pair (no suffix) */
#define NMR_REG_SW           2       /* every host ring pair (^) */
#define NMR_REG_NIC_SW       3       /* NIC and host ring pairs (*) */
#define NMR_REG_ONE_NIC      4       /* NIC ring pair nr_ringid (-N) */
#define NMR_REG_ONE_SW       8       /* host ring pair nr_ringid (^N) */

/* nmreq_register.nr_flags */
#define NMR_MONITOR_TX       0x100   /* /t */
#define NMR_MONITOR_RX       0x200   /* /r */
#define NMR_ZCOPY_MON        0x400   /* /z */
#define NMR_EXCLUSIVE        0x800   /* /x */
#define NMR_RX_RINGS_ONLY    0x2000  /* /R */
#define NMR_TX_RINGS_ONLY    0x4000  /* /T */

/* netmap_slot.flags */
#define NMR_NS_BUF_CHANGED   0x0001  /* buf_idx was changed by its writer */
#define NMR_NS_MOREFRAG      0x0020  /* not the last slot of a frame */

/* One buffer descriptor: struct netmap_slot. */
struct nmr_slot {
    uint32_t buf_idx;
    uint16_t len;
    uint16_t flags;
    uint64_t ptr;
};

/* A ring: struct netmap_ring. The slots follow the 256-byte header; `sem`
 * is aligned to 128 bytes (NM_CACHE_ALIGN), which is what makes the header
 * 256 bytes. Kernels built with buffer offsets also use two of the padding
 * words (offset_mask, buf_align); nmroute opens rings without offsets, where
 * both are 0. */
struct nmr_ring {
    int64_t  buf_ofs;         /* buffers, from this header */
    uint32_t num_slots;
    uint32_t nr_buf_size;
    uint16_t ringid;
    uint16_t dir;             /* 0: tx, 1: rx */
    uint32_t head;            /* (user) first slot of the user's part */
    uint32_t cur;             /* (user) wake-up point */
    uint32_t tail;            /* (kernel) first slot of the kernel's part */
    uint32_t flags;
    struct timeval ts;        /* (kernel) time of the last sync */
    uint64_t offset_mask;
    uint64_t buf_align;
    uint8_t  sem[128] __attribute__((aligned(128)));
    struct nmr_slot slot[];
};

/* The port's descriptor in the region: struct netmap_if. */
struct nmr_if {
    char     ni_name[NMR_IF_NAMSIZ];
    uint32_t ni_version;
    uint32_t ni_flags;
    uint32_t ni_tx_rings;
    uint32_t ni_rx_rings;
    uint32_t ni_bufs_head;
    uint32_t ni_host_tx_rings;
    uint32_t ni_host_rx_rings;
    uint32_t ni_spare1[3];
    ssize_t  ring_ofs[];
};

/* Every NIOCCTRL request starts with this header: struct nmreq_header. */
struct nmr_header {
    uint16_t nr_version;
    uint16_t nr_reqtype;
    uint32_t nr_reserved;
    char     nr_name[NMR_REQ_IFNAMSIZ];
    uint64_t nr_options;      /* a chain of options, 0: none */
    uint64_t nr_body;         /* address of the request's body */
};

/* The body of NMR_REQ_REGISTER: struct nmreq_register. The counts are
 * in/out: 0 on input lets netmap choose; on output, the ones in use. */
struct nmr_register {
    uint64_t nr_offset;       /* (out) where the nmr_if is in the region */
    uint64_t nr_memsize;      /* (out) size of the region to mmap */
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_host_tx_rings;
    uint16_t nr_host_rx_rings;
    uint16_t nr_mem_id;       /* memory region; ports sharing it can swap buffers */
    uint16_t nr_ringid;
    uint32_t nr_mode;         /* NMR_REG_* */
    uint32_t nr_extra_bufs;
    uint64_t nr_flags;        /* NMR_* flags above */
};

/* The ioctls (Linux encoding): one for every request, two to sync. */
#define NMR_NIOCCTRL         _IOWR('i', 151, struct nmr_header)
#define NMR_NIOCTXSYNC       _IO('i', 148)
#define NMR_NIOCRXSYNC       _IO('i', 149)

/* The layouts, pinned. */
_Static_assert(sizeof(struct nmr_slot) == 16, "netmap_slot");
_Static_assert(offsetof(struct nmr_slot, len) == 4, "netmap_slot.len");
_Static_assert(offsetof(struct nmr_slot, flags) == 6, "netmap_slot.flags");
_Static_assert(offsetof(struct nmr_slot, ptr) == 8, "netmap_slot.ptr");
_Static_assert(sizeof(struct nmr_ring) == 256, "netmap_ring header");
_Static_assert(offsetof(struct nmr_ring, num_slots) == 8, "netmap_ring.num_slots");
_Static_assert(offsetof(struct nmr_ring, nr_buf_size) == 12, "netmap_ring.nr_buf_size");
_Static_assert(offsetof(struct nmr_ring, head) == 20, "netmap_ring.head");
_Static_assert(offsetof(struct nmr_ring, cur) == 24, "netmap_ring.cur");
_Static_assert(offsetof(struct nmr_ring, tail) == 28, "netmap_ring.tail");
_Static_assert(offsetof(struct nmr_ring, ts) == 40, "netmap_ring.ts");
_Static_assert(offsetof(struct nmr_ring, sem) == 128, "netmap_ring.sem");
_Static_assert(offsetof(struct nmr_ring, slot) == 256, "netmap_ring.slot");
_Static_assert(sizeof(struct nmr_if) == 56, "netmap_if");
_Static_assert(offsetof(struct nmr_if, ni_tx_rings) == 24, "netmap_if.ni_tx_rings");
_Static_assert(offsetof(struct nmr_if, ni_rx_rings) == 28, "netmap_if.ni_rx_rings");
_Static_assert(offsetof(struct nmr_if, ni_host_tx_rings) == 36, "netmap_if.ni_host_tx_rings");
_Static_assert(offsetof(struct nmr_if, ni_host_rx_rings) == 40, "netmap_if.ni_host_rx_rings");
_Static_assert(offsetof(struct nmr_if, ring_ofs) == 56, "netmap_if.ring_ofs");
_Static_assert(sizeof(struct nmr_header) == 88, "nmreq_header");
_Static_assert(offsetof(struct nmr_header, nr_name) == 8, "nmreq_header.nr_name");
_Static_assert(offsetof(struct nmr_header, nr_options) == 72, "nmreq_header.nr_options");
_Static_assert(offsetof(struct nmr_header, nr_body) == 80, "nmreq_header.nr_body");
_Static_assert(sizeof(struct nmr_register) == 56, "nmreq_register");
_Static_assert(offsetof(struct nmr_register, nr_tx_slots) == 16, "nmreq_register.nr_tx_slots");
_Static_assert(offsetof(struct nmr_register, nr_tx_rings) == 24, "nmreq_register.nr_tx_rings");
_Static_assert(offsetof(struct nmr_register, nr_host_tx_rings) == 28,
               "nmreq_register.nr_host_tx_rings");
_Static_assert(offsetof(struct nmr_register, nr_mem_id) == 32, "nmreq_register.nr_mem_id");
_Static_assert(offsetof(struct nmr_register, nr_ringid) == 34, "nmreq_register.nr_ringid");
_Static_assert(offsetof(struct nmr_register, nr_mode) == 36, "nmreq_register.nr_mode");
_Static_assert(offsetof(struct nmr_register, nr_extra_bufs) == 40,
               "nmreq_register.nr_extra_bufs");
_Static_assert(offsetof(struct nmr_register, nr_flags) == 48, "nmreq_register.nr_flags");
_Static_assert(NMR_NIOCCTRL == 0xC0586997UL, "NIOCCTRL");
_Static_assert(NMR_NIOCTXSYNC == 0x6994, "NIOCTXSYNC");
_Static_assert(NMR_NIOCRXSYNC == 0x6995, "NIOCRXSYNC");

#endif /* NMROUTE_KERNEL_NETMAP_H */
