# libpcap, only what classify's BPF compiler uses: a "dead" handle to compile
# a tcpdump expression for a link type, and the compiled program. libpcap is
# called at configure time only; the program runs in our own interpreter
# (fastpath/bpf.pyx), never through libpcap per packet.
cdef extern from "<pcap/pcap.h>" nogil:
    ctypedef struct pcap_t:
        pass

    struct bpf_insn:
        unsigned short code
        unsigned char jt
        unsigned char jf
        unsigned int k

    struct bpf_program:
        unsigned int bf_len
        bpf_insn* bf_insns

    enum: DLT_EN10MB

    # NULL only when out of memory.
    pcap_t* pcap_open_dead(int linktype, int snaplen)
    # 0, or -1 with the reason in pcap_geterr(p).
    int pcap_compile(pcap_t* p, bpf_program* fp, const char* expr, int optimize,
                     unsigned int netmask)
    void pcap_freecode(bpf_program* fp)
    char* pcap_geterr(pcap_t* p)
    void pcap_close(pcap_t* p)
