"""Opening a connection for a client, with the one-line reasons a user can act on.

Shared by the chat client, the echo client and `bench`. A chat client sends
nothing, not even its `login`, until the peer has proved to be a netlab chat
server with a valid `welcome`: anything else (an echo server would send the
password back) is "HOST:PORT is not a netlab chat server". Mix-ups of TLS and
plain text, and a certificate for other names, are named as such.

The plain-client-at-a-TLS-port case cannot be seen at once: a TLS server
says nothing until it gets a ClientHello, so the client sees the silence of
any peer that is not a chat server. After WELCOME_TIMEOUT of it, a TLS
handshake on a second connection (no certificate check, nothing of the
user's sent) tells the two apart. That costs those seconds only on that
mistake; a chat server welcomes at once.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netlab import wire as p
from netlab.netutil import format_address

#: A chat server sends `welcome` from its loop as it accepts, before it reads anything: a
#: peer silent this long is not one (or is stalled), and the user should hear so soon.
WELCOME_TIMEOUT = 5.0
#: A TLS server answers a ClientHello at once; this only bounds a peer that never does.
TLS_PROBE_TIMEOUT = 2.0
#: Longest wait for the TCP connection and a TLS handshake.
CONNECT_TIMEOUT = 10.0
#: OpenSSL's reasons for a handshake whose answer was no TLS record at all (a chat server's
#: `welcome`, an echo of the ClientHello): the peer speaks plain text.
NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "UNEXPECTED_MESSAGE", "RECORD_LAYER_FAILURE",
                             "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"})
#: X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
NAME_MISMATCH_CODES = frozenset({62, 64})
#: TLS record content types (alert, handshake, ...) then a major version of 3: no netlab frame
#: starts so (its length would be hundreds of megabytes).
TLS_RECORD_TYPES = range(0x14, 0x18)


class WrongPeer(Exception):
    """The peer is not the server asked for; str() is the one line that says so."""


class NoWelcome(WrongPeer):
    """The peer stayed silent: no chat server, or a stalled one (at a reconnect, waited out)."""


def plain(sock: socket.socket) -> socket.socket:
    return sock


@dataclass(frozen=True)
class Peer:
    """A server as the user named it, and how each socket to it is wrapped (TLS or not)."""

    host: str
    port: int
    wrap: Callable[[socket.socket], socket.socket] = field(default=plain)
    #: How long a connection may stay silent before it is taken for no chat server.
    welcome_timeout: float = WELCOME_TIMEOUT

    @property
    def address(self) -> str:
        return format_address((self.host, self.port))

    def open(self, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
        """A connected (and with TLS, verified) socket with `timeout` set.

        Raises WrongPeer for a TLS mix-up or a certificate it cannot trust, OSError
        for the rest (refused, unreachable, timed out).
        """
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            return self.wrap(sock)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise WrongPeer(self._untrusted(exc)) from None
        except ssl.SSLError as exc:
            sock.close()
            if exc.reason in NOT_TLS_REASONS:
                raise WrongPeer(f"{self.address} does not speak TLS: drop --tls") from None
            raise WrongPeer(f"the TLS handshake with {self.address} failed: {exc.reason or exc}") from None
        except OSError:
            sock.close()
            raise

    def speaks_tls(self) -> bool:
        """Whether a TLS handshake succeeds on a new connection (asked after a plain
        connection went wrong: the user may have left --tls out)."""
        try:
            with self._unverified_handshake():
                return True
        except OSError:  # ssl.SSLError included
            return False

    def plain_at_tls(self, sock: socket.socket) -> str | None:
        """"HOST:PORT speaks TLS: add --tls" if `sock` is plain text and the server speaks TLS."""
        if not isinstance(sock, ssl.SSLSocket) and self.speaks_tls():
            return f"{self.address} speaks TLS: add --tls"
        return None

    def _unverified_handshake(self) -> ssl.SSLSocket:
        """A TLS connection that verifies nothing: for looking only (is it TLS? which
        names?), never for sending anything of the user's. Raises OSError."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = socket.create_connection((self.host, self.port), timeout=TLS_PROBE_TIMEOUT)
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except OSError:
            sock.close()
            raise

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> str:
        if exc.verify_code in NAME_MISMATCH_CODES and (names := self._certificate_names()):
            return f"the certificate of {self.address} is for {', '.join(names)}, not {self.host}"
        return (f"the server's certificate could not be verified ({exc.verify_message}); "
                "pass --ca FILE with the certificate it uses")

    def _certificate_names(self) -> list[str]:
        """The names the server's certificate holds (its subjectAltName, else its common name),
        fetched by a second handshake that verifies nothing: only the error message uses them."""
        from cryptography import x509

        try:
            with self._unverified_handshake() as tls:
                der = tls.getpeercert(binary_form=True)
        except OSError:
            return []
        if der is None:
            return []
        certificate = x509.load_der_x509_certificate(der)
        try:
            names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return [str(attribute.value) for attribute in
                    certificate.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]
        return [*names.get_values_for_type(x509.DNSName),
                *(str(ip) for ip in names.get_values_for_type(x509.IPAddress))]


def first_frame(peer: Peer, sock: socket.socket, decoder: p.FrameDecoder) -> dict:
    """The server's first frame: a valid `welcome`, or a fatal `error` (server_full refuses so).

    Anything else within the peer's `welcome_timeout` raises WrongPeer: bytes that are no frame or a
    frame of the wrong shape at once; silence (NoWelcome) when the time is up,
    unless the server turns out to speak TLS to a plain `sock`. `sock`'s own
    timeout is left as it was.
    """
    not_chat = f"{peer.address} is not a netlab chat server"
    previous = sock.gettimeout()
    deadline = time.monotonic() + peer.welcome_timeout
    heard = False  # any byte at all: silence and nonsense are told apart
    try:
        while (frame := decoder.next_frame()) is None:
            data = recv_before(sock, deadline)
            if data is None:  # the time is up
                if heard:
                    raise WrongPeer(not_chat) from None
                if tls := peer.plain_at_tls(sock):
                    raise WrongPeer(tls) from None
                raise NoWelcome(not_chat) from None
            if not data:
                raise ConnectionError("closed by the server")
            if not heard and len(data) > 1 and data[0] in TLS_RECORD_TYPES and data[1] == 3:
                raise WrongPeer(f"{peer.address} speaks TLS: add --tls")
            heard = True
            decoder.feed(data)
    except p.ProtocolError:
        raise WrongPeer(not_chat) from None
    finally:
        sock.settimeout(previous)
    if p.is_welcome(frame) or (frame["type"] == "error" and frame.get("fatal") is True
                               and isinstance(frame.get("code"), str)):
        return frame
    raise WrongPeer(not_chat)


def recv_before(sock: socket.socket, deadline: float) -> bytes | None:
    """What `sock` receives before `deadline` (time.monotonic), or None once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None
