"""Small network probes run inside the test bed's namespaces, to measure what a fault does (netns.py's self-test).
Each prints one JSON object (the figures) on its last line.

    netprobe.py udp-echo PORT                      echoes datagrams until killed (prints `ready` first)
    netprobe.py udp-count PORT SECONDS             counts numbered datagrams for at most SECONDS after `ready`,
                                                   ending 0.5 s after the last one
    netprobe.py udp-send HOST PORT N GAP_MS        sends N numbered datagrams, GAP_MS apart
    netprobe.py udp-rtt HOST PORT N [TIMEOUT]      N request/replies one after the other (TIMEOUT s each, 1)
    netprobe.py tcp-sink PORT                      reads connections to the end until killed (`ready` first)
    netprobe.py tcp-send HOST PORT BYTES TIMEOUT   writes BYTES and waits for the close; the seconds it took
"""
import json
import socket
import struct
import sys
import time


def main(argv):
    mode = argv[0]
    if mode == "udp-echo":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(argv[1])))
        print("ready", flush=True)
        while True:
            d, a = s.recvfrom(2048)
            s.sendto(d, a)
    if mode == "udp-count":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(argv[1])))
        s.settimeout(0.1)
        print("ready", flush=True)
        end = time.monotonic() + float(argv[2])
        seen, received, reordered, top, last = set(), 0, 0, -1, None
        while time.monotonic() < end and (last is None or time.monotonic() - last < 0.5):
            try:
                d = s.recv(2048)
            except socket.timeout:
                continue
            last = time.monotonic()
            n = struct.unpack("!I", d[:4])[0]
            received += 1
            if n < top:
                reordered += 1
            top = max(top, n)
            seen.add(n)
        print(json.dumps({"received": received, "unique": len(seen), "duplicates": received - len(seen),
                          "reordered": reordered}), flush=True)
        return
    if mode == "udp-send":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        gap = float(argv[4]) / 1000
        for i in range(int(argv[3])):
            s.sendto(struct.pack("!I", i) + b"x" * 60, (argv[1], int(argv[2])))
            if gap:
                time.sleep(gap)  # pacing of the datagrams, not synchronisation
        print(json.dumps({"sent": int(argv[3])}), flush=True)
        return
    if mode == "udp-rtt":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(float(argv[4]) if len(argv) > 4 else 1.0)
        rtts = []
        for i in range(int(argv[3])):
            t = time.monotonic()
            s.sendto(struct.pack("!I", i), (argv[1], int(argv[2])))
            try:
                while struct.unpack("!I", s.recv(2048)[:4])[0] != i:
                    pass
                rtts.append((time.monotonic() - t) * 1000)
            except socket.timeout:
                pass
        print(json.dumps({"replied": len(rtts), "rtt_ms": sorted(rtts)}), flush=True)
        return
    if mode == "tcp-sink":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(argv[1])))
        s.listen()
        print("ready", flush=True)
        while True:
            c, _ = s.accept()
            while c.recv(1 << 16):
                pass
            c.close()
    if mode == "tcp-send":
        t = time.monotonic()
        c = socket.create_connection((argv[1], int(argv[2])), timeout=float(argv[4]))
        left = int(argv[3])
        chunk = b"x" * 65536
        while left > 0:
            c.sendall(chunk[:left])
            left -= min(left, len(chunk))
        c.shutdown(socket.SHUT_WR)
        c.recv(1)  # the sink closes once it has read everything
        print(json.dumps({"bytes": int(argv[3]), "seconds": time.monotonic() - t}), flush=True)
        return
    raise SystemExit(f"netprobe: unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
