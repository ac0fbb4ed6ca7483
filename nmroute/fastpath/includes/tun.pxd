# TUN/TAP devices: what tap.pyx uses of <linux/if_tun.h>, <net/if.h> and
# <sys/ioctl.h>. Only what is used.
#
# open("/dev/net/tun") then ioctl(TUNSETIFF, {name, IFF_TAP | IFF_NO_PI})
# attaches the fd to TAP `name`, creating it when missing (needs
# CAP_NET_ADMIN). One read() returns one Ethernet frame, one write() sends
# one; with IFF_NO_PI no 4-byte packet-info header precedes the frame. A TAP
# created this way (not made persistent) is removed when its last fd closes.
cdef extern from "<linux/if_tun.h>" nogil:
    enum: TUNSETIFF
    enum: IFF_TAP
    enum: IFF_NO_PI

cdef extern from "<sys/ioctl.h>" nogil:
    int ioctl(int fd, unsigned long request, ...)

cdef extern from "<net/if.h>" nogil:
    enum: IFNAMSIZ
    enum: IFF_UP
    struct sockaddr_hw "sockaddr":
        unsigned short sa_family
        char sa_data[14]
    struct ifreq:
        char ifr_name[16]        # IFNAMSIZ
        short ifr_flags          # SIOC[GS]IFFLAGS, TUNSETIFF
        int ifr_mtu              # SIOCSIFMTU
        sockaddr_hw ifr_hwaddr   # SIOCSIFHWADDR

cdef extern from "<linux/sockios.h>" nogil:
    enum: SIOCGIFFLAGS
    enum: SIOCSIFFLAGS
    enum: SIOCSIFMTU
    enum: SIOCSIFHWADDR

cdef extern from "<net/if_arp.h>" nogil:
    enum: ARPHRD_ETHER

cdef extern from "<sys/socket.h>" nogil:
    enum: AF_INET
    enum: SOCK_DGRAM
