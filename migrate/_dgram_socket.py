# -*- test-case-name: tests.test_datagram -*-
"""
The UDP socket under datagram sessions.

Unlike C{reactor.listenUDP}, it tells for each datagram which of our
addresses it reached (C{IP_PKTINFO}, C{IPV6_RECVPKTINFO}) and can send from
a chosen local address: a server bound to the wildcard address on a host
with several addresses answers each peer from the address that peer
reached, as a client behind a stateful firewall or NAT needs (an answer
from another address would be dropped there).  Without a wildcard bind the
kernel's choice is already right, and no ancillary data is used.

It is an C{IReadDescriptor} for the reactor's C{addReader}.  Sending never
blocks: a datagram the kernel cannot take now (a full buffer, no route,
the chosen source address gone) is dropped, as UDP drops it.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from typing import Any, Callable, Optional

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

Receiver = Callable[[bytes, tuple[str, int], Optional[str]], None]

# Python names IP_PKTINFO only on some platforms; Linux's value is 8.
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8 if sys.platform.startswith("linux") else None)
_IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", None)
_IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", None)
_IN_PKTINFO = struct.Struct("=I4s4s")
_IN6_PKTINFO = struct.Struct("=16sI")
_CMSG_SPACE = socket.CMSG_SPACE(_IN6_PKTINFO.size) if hasattr(socket, "CMSG_SPACE") else 0

#: Datagrams read per C{doRead} at most, so that one busy socket cannot
#: starve the reactor.
READS_PER_TURN = 128

# Send errors after which the datagram is just dropped.
_DROP = {
    errno.EAGAIN,
    errno.EWOULDBLOCK,
    errno.ENOBUFS,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.ECONNREFUSED,
    errno.EPERM,
    errno.EACCES,
    errno.EMSGSIZE,
}
# Send errors that mean the chosen source address cannot be used (gone).
_SOURCE_GONE = {errno.EINVAL, errno.EADDRNOTAVAIL}


@implementer(IReadDescriptor)
class DatagramSocket:
    """
    A non-blocking UDP socket read by the reactor.

    @ivar pktinfo: whether each datagram's local address is known (the
        socket is bound to the wildcard address).
    @ivar sendErrors: datagrams dropped because the kernel refused them.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFDSet,
        receiver: Receiver,
        host: str,
        port: int,
        family: int = socket.AF_INET,
        answerFromReached: bool = True,
    ) -> None:
        """
        Create the socket and bind it (raises C{OSError} if that fails).
        Reading starts with L{startReading}.

        @param answerFromReached: learn each datagram's local address, to
            answer from it (a server's choice).  A client leaves the source
            to the routing table, so that its datagrams follow its moves.
        """
        self._reactor = reactor
        self._receiver = receiver
        self.family = family
        self.sendErrors = 0
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            wildcard = answerFromReached and host in ("", "0.0.0.0", "::")
            self.pktinfo = False
            if wildcard and family == socket.AF_INET and _IP_PKTINFO is not None:
                sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
                self.pktinfo = True
            elif wildcard and family == socket.AF_INET6 and _IPV6_RECVPKTINFO is not None:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)
                self.pktinfo = True
            sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        except BaseException:
            sock.close()
            raise
        self._socket: Optional[socket.socket] = sock
        self._reading = False

    def logPrefix(self) -> str:
        return "DatagramSocket"

    def fileno(self) -> int:
        return self._socket.fileno() if self._socket is not None else -1

    def getHost(self) -> IPv4Address | IPv6Address:
        """
        The socket's bound address.
        """
        assert self._socket is not None
        name = self._socket.getsockname()
        if self.family == socket.AF_INET6:
            return IPv6Address("UDP", name[0], name[1])
        return IPv4Address("UDP", name[0], name[1])

    def startReading(self) -> None:
        if not self._reading and self._socket is not None:
            self._reading = True
            self._reactor.addReader(self)

    def doRead(self) -> None:
        sock = self._socket
        receiver = self._receiver
        pktinfo = self.pktinfo
        normalize = self.family == socket.AF_INET6
        for _ in range(READS_PER_TURN):
            if sock is None or not self._reading:
                return
            local: Optional[str] = None
            try:
                if pktinfo:
                    data, ancillary, _, address = sock.recvmsg(65536, _CMSG_SPACE)
                    local = self._local(ancillary)
                else:
                    data, address = sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError as e:
                # ICMP errors reported on the socket (ECONNREFUSED...) say
                # nothing about a session: ignore them.
                if e.errno == errno.EINTR or e.errno in _DROP:
                    continue
                raise
            if normalize:
                address = (address[0], address[1])
            try:
                receiver(data, address, local)
            except Exception:
                self.log.failure("datagram receiver raised")
            sock = self._socket

    def _local(self, ancillary: list[tuple[int, int, bytes]]) -> Optional[str]:
        for level, kind, data in ancillary:
            if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
                _, _, dst = _IN_PKTINFO.unpack_from(data)
                return socket.inet_ntop(socket.AF_INET, dst)
            if level == socket.IPPROTO_IPV6 and kind == _IPV6_PKTINFO and len(data) >= _IN6_PKTINFO.size:
                dst, _ = _IN6_PKTINFO.unpack_from(data)
                return socket.inet_ntop(socket.AF_INET6, dst)
        return None

    def send(self, data: bytes, address: tuple[str, int], local: Optional[str] = None) -> bool:
        """
        Send one datagram to C{address}, from our address C{local} when
        given (and still ours: else from the system's choice).

        @return: whether the kernel took it.
        """
        sock = self._socket
        if sock is None:
            return False
        try:
            if local is not None and self.pktinfo:
                try:
                    sock.sendmsg([data], [self._pktinfo(local)], 0, address)
                    return True
                except OSError as e:
                    # The address gone (EINVAL, EADDRNOTAVAIL, or
                    # ENETUNREACH: no route from it): the system's choice.
                    if e.errno not in _SOURCE_GONE and e.errno not in _DROP:
                        raise
            sock.sendto(data, address)
            return True
        except OSError as e:
            if e.errno in _DROP or e.errno in _SOURCE_GONE:
                self.sendErrors += 1
                return False
            raise

    def _pktinfo(self, local: str) -> tuple[int, int, bytes]:
        if self.family == socket.AF_INET6:
            if ":" not in local:
                local = "::ffff:" + local
            raw = socket.inet_pton(socket.AF_INET6, local)
            return (socket.IPPROTO_IPV6, _IPV6_PKTINFO or 0, _IN6_PKTINFO.pack(raw, 0))
        raw = socket.inet_pton(socket.AF_INET, local)
        return (socket.IPPROTO_IP, _IP_PKTINFO or 0, _IN_PKTINFO.pack(0, raw, b"\x00" * 4))

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor is done with us (it is shutting down, or we were
        removed): close the socket.
        """
        self.close()

    def close(self) -> None:
        """
        Stop reading and close the socket.  Calling it again does nothing.
        """
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def familyOf(host: str) -> int:
    """
    The address family of a textual IP address.
    """
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def makeAddress(address: Any) -> IPv4Address | IPv6Address:
    """
    A Twisted address for a C{(host, port)} tuple.
    """
    host, port = address[0], address[1]
    if ":" in host:
        return IPv6Address("UDP", host, port)
    return IPv4Address("UDP", host, port)
