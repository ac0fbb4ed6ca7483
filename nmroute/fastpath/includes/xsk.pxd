# AF_XDP through libxdp (<xdp/xsk.h>, <xdp/libxdp.h>) and the bits of libbpf
# and <linux/if_xdp.h> that xdp.pyx uses. Only what is used.
#
# The model (Documentation/networking/af_xdp.rst): a UMEM is a region of
# user memory cut into chunks, registered with the kernel once. Four rings
# move chunk addresses between user space and the kernel:
#   fill (user -> kernel): chunks the kernel may receive into
#   rx   (kernel -> user): descriptors {addr, len} of received frames
#   tx   (user -> kernel): descriptors of frames to send
#   comp (kernel -> user): addresses of chunks whose frames were sent
# Several sockets (interfaces, queues) share one UMEM, each with its own
# fill and completion rings. The ring helpers below are libxdp's inline
# functions: a producer reserves, writes and submits; a consumer peeks,
# reads and releases.
from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from "<linux/if_xdp.h>" nogil:
    enum: XDP_OPTIONS_ZEROCOPY
    struct xdp_options:
        uint32_t flags
    enum: XDP_COPY
    enum: XDP_ZEROCOPY
    enum: XDP_USE_NEED_WAKEUP
    enum: XDP_RING_NEED_WAKEUP
    struct xdp_desc:
        uint64_t addr
        uint32_t len
        uint32_t options

cdef extern from "<linux/if_link.h>" nogil:
    enum: XDP_FLAGS_UPDATE_IF_NOEXIST
    enum: XDP_FLAGS_SKB_MODE
    enum: XDP_FLAGS_DRV_MODE

cdef extern from "<xdp/xsk.h>" nogil:
    struct xsk_ring_prod:
        uint32_t cached_prod
        uint32_t cached_cons
        uint32_t mask
        uint32_t size
        uint32_t* producer
        uint32_t* consumer
    struct xsk_ring_cons:
        uint32_t cached_prod
        uint32_t cached_cons
        uint32_t mask
        uint32_t size
        uint32_t* producer
        uint32_t* consumer
    struct xsk_umem:
        pass
    struct xsk_socket:
        pass
    struct xsk_umem_config:
        uint32_t fill_size
        uint32_t comp_size
        uint32_t frame_size
        uint32_t frame_headroom
        uint32_t flags
    struct xsk_socket_config:
        uint32_t rx_size
        uint32_t tx_size
        uint32_t libxdp_flags
        uint32_t xdp_flags
        uint16_t bind_flags
    enum: XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD

    uint64_t* xsk_ring_prod__fill_addr(xsk_ring_prod* fill, uint32_t idx)
    const uint64_t* xsk_ring_cons__comp_addr(const xsk_ring_cons* comp, uint32_t idx)
    xdp_desc* xsk_ring_prod__tx_desc(xsk_ring_prod* tx, uint32_t idx)
    const xdp_desc* xsk_ring_cons__rx_desc(const xsk_ring_cons* rx, uint32_t idx)
    int xsk_ring_prod__needs_wakeup(const xsk_ring_prod* r)
    uint32_t xsk_prod_nb_free(xsk_ring_prod* r, uint32_t nb)
    uint32_t xsk_ring_prod__reserve(xsk_ring_prod* prod, uint32_t nb, uint32_t* idx)
    void xsk_ring_prod__submit(xsk_ring_prod* prod, uint32_t nb)
    uint32_t xsk_ring_cons__peek(xsk_ring_cons* cons, uint32_t nb, uint32_t* idx)
    void xsk_ring_cons__release(xsk_ring_cons* cons, uint32_t nb)

    int xsk_umem__create(xsk_umem** umem, void* area, uint64_t size,
                         xsk_ring_prod* fill, xsk_ring_cons* comp,
                         const xsk_umem_config* config)
    int xsk_umem__delete(xsk_umem* umem)
    int xsk_socket__create_shared(xsk_socket** xsk, const char* ifname, uint32_t queue_id,
                                  xsk_umem* umem, xsk_ring_cons* rx, xsk_ring_prod* tx,
                                  xsk_ring_prod* fill, xsk_ring_cons* comp,
                                  const xsk_socket_config* config)
    void xsk_socket__delete(xsk_socket* xsk)
    int xsk_socket__fd(const xsk_socket* xsk)

cdef extern from "<stdarg.h>" nogil:
    ctypedef struct va_list:
        pass

cdef extern from "<xdp/libxdp.h>" nogil:
    enum libxdp_print_level:
        LIBXDP_WARN
        LIBXDP_INFO
        LIBXDP_DEBUG
    ctypedef int (*libxdp_print_fn_t)(libxdp_print_level level, const char*, va_list ap)
    libxdp_print_fn_t libxdp_set_print(libxdp_print_fn_t fn)

cdef extern from "<bpf/libbpf.h>" nogil:
    enum libbpf_print_level:
        LIBBPF_WARN
        LIBBPF_INFO
        LIBBPF_DEBUG
    ctypedef int (*libbpf_print_fn_t)(libbpf_print_level level, const char*, va_list ap)
    libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn)
    int bpf_xdp_query_id(int ifindex, int flags, uint32_t* prog_id)
    int bpf_xdp_detach(int ifindex, uint32_t flags, const void* opts)
    int bpf_prog_get_fd_by_id(uint32_t id)
    int bpf_obj_get_info_by_fd(int bpf_fd, void* info, uint32_t* info_len)

cdef extern from "<linux/bpf.h>" nogil:
    struct bpf_prog_info:
        char name[16]
