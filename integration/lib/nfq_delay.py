"""A packet delayer on the kernel's NFQUEUE, for kernels without tc netem (CONFIG_NET_SCH_NETEM unset).

    python3 nfq_delay.py --queue N --delay MS [--jitter MS] [--reorder PCT] [--seed S] [--check]

run inside a network namespace whose iptables sends packets to queue N (`-j NFQUEUE --queue-num N --queue-bypass`).
Each packet the kernel queues is held and accepted after MS milliseconds plus a uniform jitter in [-J, +J] (at least
0), so packets overtake each other when the jitter exceeds their spacing, as with netem's jitter; --reorder PCT lets
that share of packets through at once (netem's `reorder`). Only the packet's id crosses to user space (copy mode
META). On SIGTERM or SIGINT every held packet is accepted at once before it exits, so stopping the delayer loses
nothing. Prints `ready queue N` once bound; a bind failure is one line on stderr and exit code 1.

The nfnetlink_queue protocol is spoken directly (no libnetfilter_queue): a NETLINK_NETFILTER socket, config messages
NFQNL_CFG_CMD_BIND and the copy mode, then NFQNL_MSG_PACKET in and NFQNL_MSG_VERDICT out.
"""
import argparse
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def _attr(kind, payload):
    a = struct.pack("=HH", 4 + len(payload), kind) + payload
    return a + b"\0" * (-len(a) % 4)


def _msg(kind, queue, attrs, seq, flags=NLM_F_REQUEST):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def _attrs(data):
    out, i = {}, 0
    while i + 4 <= len(data):
        ln, kind = struct.unpack_from("=HH", data, i)
        if ln < 4:
            break
        out[kind & 0x7fff] = data[i + 4:i + ln]
        i += (ln + 3) & ~3
    return out


class Queue:
    def __init__(self, num):
        self.num = num
        self.seq = 0
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.s.bind((0, 0))
        self._config(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)))
        self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                     _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 20000)))

    def _config(self, *attrs):
        self.seq += 1
        self.s.send(_msg(NFQNL_MSG_CONFIG, self.num, attrs, self.seq, NLM_F_REQUEST | NLM_F_ACK))
        while True:
            data = self.s.recv(65536)
            ln, kind, _, seq, _ = struct.unpack_from("=IHHII", data, 0)
            if kind == NLMSG_ERROR and seq == self.seq:
                err = struct.unpack_from("=i", data, 16)[0]
                if err:
                    raise OSError(-err, os.strerror(-err))
                return

    def packets(self):
        """The ids of the packets in one read of the socket."""
        data = self.s.recv(1 << 20)
        ids, i = [], 0
        while i + 16 <= len(data):
            ln, kind, _, _, _ = struct.unpack_from("=IHHII", data, i)
            if ln < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                hdr = _attrs(data[i + 20:i + ln]).get(NFQA_PACKET_HDR)
                if hdr:
                    ids.append(struct.unpack_from("!I", hdr, 0)[0])
            i += (ln + 3) & ~3
        return ids

    def accept(self, pid):
        self.seq += 1
        self.s.send(_msg(NFQNL_MSG_VERDICT, self.num, [_attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))],
                         self.seq))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--delay", type=float, required=True, help="milliseconds")
    ap.add_argument("--jitter", type=float, default=0.0, help="milliseconds, uniform in [-J, +J]")
    ap.add_argument("--reorder", type=float, default=0.0, help="percent of packets let through at once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="bind the queue, then exit 0")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    try:
        q = Queue(a.queue)
    except OSError as e:
        print(f"nfq_delay: cannot bind NFQUEUE {a.queue}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    if a.check:
        sys.exit(0)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: stop.append(s))
    held = []  # heap of (release time, arrival order, packet id)
    n = 0
    print(f"ready queue {a.queue}", flush=True)
    while not stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            q.accept(heapq.heappop(held)[2])
        timeout = max(0.0, held[0][0] - now) if held else 0.5
        try:
            readable, _, _ = select.select([q.s], [], [], timeout)
        except InterruptedError:
            continue
        if not readable:
            continue
        try:
            ids = q.packets()
        except OSError:  # ENOBUFS: the kernel dropped what did not fit, as a full netem queue drops
            continue
        now = time.monotonic()
        for pid in ids:
            n += 1
            if a.reorder and rng.random() * 100 < a.reorder:
                q.accept(pid)
                continue
            d = max(0.0, a.delay + (rng.uniform(-a.jitter, a.jitter) if a.jitter else 0.0))
            heapq.heappush(held, (now + d / 1000.0, n, pid))
    for _, _, pid in held:
        q.accept(pid)
    sys.exit(0)


if __name__ == "__main__":
    main()
