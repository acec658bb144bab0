"""Raw EPMD wire helpers for the epmd integration tests: send exact bytes, read what comes back, and say whether
the server closed the connection or kept it open."""
import socket
import struct
import time

ALIVE2_REQ, PORT_PLEASE2_REQ, NAMES_REQ, DUMP_REQ, KILL_REQ, STOP_REQ = 120, 122, 110, 100, 107, 115


def packet(payload):
    return struct.pack(">H", len(payload)) + payload


def alive2(name, port=5000, high=6, low=5, node_type=77, proto=0, extra=b""):
    n = name.encode() if isinstance(name, str) else name
    return (bytes([ALIVE2_REQ]) + struct.pack(">HBBHHH", port, node_type, proto, high, low, len(n)) + n
            + struct.pack(">H", len(extra)) + extra)


class Wire:
    """One EPMD at 127.0.0.1:port."""

    def __init__(self, port, host="127.0.0.1"):
        self.port = port
        self.host = host

    def connect(self):
        s = socket.create_connection((self.host, self.port), timeout=5)
        return s

    @staticmethod
    def read_until_closed(s, timeout=5.0):
        """Everything the server sends until it closes; 'open' if it is still open after timeout."""
        s.settimeout(timeout)
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    return out, "closed"
                out += d
        except socket.timeout:
            return out, "open"
        except ConnectionResetError:
            return out, "reset"

    @staticmethod
    def read_exact(s, n, timeout=5.0):
        s.settimeout(timeout)
        out = b""
        while len(out) < n:
            d = s.recv(n - len(out))
            if not d:
                break
            out += d
        return out

    @staticmethod
    def still_open(s, wait=0.3):
        """True when the server neither sent anything nor closed within `wait` seconds."""
        s.settimeout(wait)
        try:
            d = s.recv(1)
            return False if not d else "sent data"
        except socket.timeout:
            return True
        except ConnectionResetError:
            return False

    def raw(self, data, timeout=5.0):
        """Sends data as is (one send) and returns (reply, 'closed'|'open'|'reset')."""
        with self.connect() as s:
            s.sendall(data)
            return self.read_until_closed(s, timeout)

    def request(self, payload, timeout=5.0):
        return self.raw(packet(payload), timeout)

    def register(self, name, **kw):
        """Returns (socket kept open, response bytes). The response is 6 bytes (ALIVE2_X_RESP) or 4 (ALIVE2_RESP)."""
        s = self.connect()
        s.sendall(packet(alive2(name, **kw)))
        head = self.read_exact(s, 1)
        if not head:
            return s, b""
        rest = self.read_exact(s, 5 if head[0] == 118 else 3)
        return s, head + rest

    def names(self):
        data, state = self.request(bytes([NAMES_REQ]))
        assert state == "closed", state
        assert struct.unpack(">I", data[:4])[0] == self.port, data[:4]
        return data[4:].decode()

    def wait_names(self, expected_text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            got = self.names()
            if got == expected_text:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"NAMES never became {expected_text!r}; last {got!r}")
            time.sleep(0.02)
