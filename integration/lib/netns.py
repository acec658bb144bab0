"""A fault-injection test bed of network namespaces (issue 16), for Python tests on top of harness.py.

    with netns.Bed(c, ticktime=4) as bed:       # c: a harness.Cluster
        a = bed.erl("a")                         # erl -name a@198.18.0.2 in namespace <bed>-a, its own epmd
        b = bed.cnode("b")                       # cnode --name b@198.18.0.3 --embedded-epmd in <bed>-b
        with bed.cut(a, b, one_way=True):        # a's packets no longer reach b; b's still reach a
            ...
        bed.delay(b, None, 500)                  # everything b sends waits 500 ms (until undone or the bed closes)

Layout. Every node runs in a namespace of its own, joined by a veth pair (eth0 inside, v<N> outside) to the bridge
br0, which lives in a further "switch" namespace: nothing of the test network is in the machine's own namespace, and
the only route a node has is 198.18.0.0/15 on eth0 (the block RFC 2544 sets aside for network benchmarks), so no
packet can leave the bed. Node names are long names on those addresses (a@198.18.0.2); each namespace has its own
EPMD on the cluster's EPMD port (cnode's embedded one, or epmd for a BEAM node). The namespaces are named
cnft<pid>-<bed>-<node> (cnft<pid>-<bed>-sw for the switch), <pid> being the test process.

Faults (each returns a Fault: a context manager whose undo() takes it back; the bed undoes what is left when it
closes):
- cut(a, b, one_way=False): an nftables drop rule on the bridge's forward hook in the switch namespace, for a's
  packets to b (and b's to a unless one way): the packets leave a normally and vanish on the wire.
  partition([[a, b], [c], ...]) cuts every pair across sides.
- loss(a, b, pct): the same place, `numgen random mod 10000 < pct*100 drop`. duplicate(a, b, pct): nftables
  `dup to b` in a's output hook (dup exists for the ip family only), for pct percent of the packets.
- delay(a, b, ms, jitter_ms=0, reorder_pct=0): tc netem when the kernel has it, else (or with CNODE_FAULTS_DELAY=
  nfqueue) nfq_delay.py, a user-space delayer fed by iptables' NFQUEUE target.
- limit(a, b, kbit): a tc HTB class with that rate, packets to b classified into it by a u32 filter.
- freeze(node): SIGSTOP to its process group (SIGCONT on undo); kill9(node): SIGKILL, not undone.
b may be None (every destination) where it says so; `both=True` applies a fault in both directions.

Cleanup: Bed is a context manager; every open bed is also closed at exit and on SIGTERM/SIGINT/SIGHUP
(harness.at_exit); the first Bed of a process deletes namespaces left by test processes that no longer run (their
<pid> is gone), killing what still runs inside them. A kernel feature that is missing (netem, nftables, NFQUEUE,
HTB) makes only the faults that need it raise Unsupported, with what is missing (features() lists them).
"""
import itertools
import os
import re
import signal
import subprocess
import sys
import threading

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
from cnode_node import start_cnode  # noqa: E402

PREFIX = "cnft"
NET = "198.18.0.0/15"
DELAYER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nfq_delay.py")


class Unsupported(Exception):
    """A fault this machine cannot make: the message says which kernel feature or tool is missing."""


def run(argv, input=None, check=True, timeout=30):
    r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def namespaces():
    r = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def delete_namespace(ns):
    """Kills what still runs in ns (processes of this bed), then deletes it."""
    r = run(["ip", "netns", "pids", ns], check=False)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run(["ip", "netns", "del", ns], check=False)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cleanup_stale():
    """Deletes the namespaces of test beds whose process is gone (a run killed before it could clean up)."""
    gone = []
    for ns in namespaces():
        m = re.match(rf"{PREFIX}(\d+)-", ns)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            delete_namespace(ns)
            gone.append(ns)
    return gone


def unavailable():
    """Why network namespaces cannot be used here (None when they can)."""
    if os.geteuid() != 0:
        return "not root: the test bed needs root for ip netns, nft, tc (CI runs as root)"
    for tool in ("ip", "nft", "tc"):
        if run(["sh", "-c", f"command -v {tool}"], check=False).returncode != 0:
            return f"{tool} is not installed (scripts/bootstrap installs iproute2 and nftables)"
    ns = f"{PREFIX}{os.getpid()}-check"
    r = run(["ip", "netns", "add", ns], check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    run(["ip", "netns", "del", ns], check=False)
    return None


_features = None
_features_lock = threading.Lock()


def features():
    """{feature: None if usable, else why not} for nft, htb, netem, nfqueue; probed once in a scratch namespace."""
    global _features
    with _features_lock:
        if _features is not None:
            return _features
        ns = f"{PREFIX}{os.getpid()}-probe"
        run(["ip", "netns", "add", ns])
        try:
            x = ["ip", "netns", "exec", ns]
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            f = {}

            def probe(name, argv, what):
                r = run(x + argv, check=False)
                f[name] = None if r.returncode == 0 else f"{what} ({' '.join(argv)}: {r.stderr.strip()})"
            probe("nft", ["nft", "add table inet cnft_probe"], "nftables not usable")
            probe("htb", ["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"],
                  "tc qdisc htb missing (CONFIG_NET_SCH_HTB)")
            run(x + ["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
            probe("netem", ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                  "tc qdisc netem missing (CONFIG_NET_SCH_NETEM)")
            run(x + ["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
            if run(["sh", "-c", "command -v iptables"], check=False).returncode != 0:
                f["nfqueue"] = "iptables is not installed (scripts/bootstrap installs it)"
            else:
                probe("nfqueue", ["iptables", "-w", "-A", "OUTPUT", "-o", "lo", "-j", "NFQUEUE", "--queue-num", "1",
                                  "--queue-bypass"], "iptables NFQUEUE target missing (CONFIG_NETFILTER_XT_TARGET_NFQUEUE)")
                if f["nfqueue"] is None:
                    probe("nfqueue", [sys.executable, DELAYER, "--queue", "1", "--delay", "0", "--check"],
                          "NFQUEUE cannot be bound (CONFIG_NETFILTER_NETLINK_QUEUE)")
            _features = f
            return f
        finally:
            delete_namespace(ns)


def delay_backend():
    """netem or nfqueue, as delay() will use; raises Unsupported when neither works."""
    f = features()
    want = os.environ.get("CNODE_FAULTS_DELAY", "")
    if want not in ("", "netem", "nfqueue"):
        raise Unsupported(f"CNODE_FAULTS_DELAY={want}: netem or nfqueue")
    for b in ([want] if want else ["netem", "nfqueue"]):
        if f[b] is None and (b != "netem" or f["htb"] is None):
            return b
    raise Unsupported("delay: no tc netem (" + str(f["netem"]) + ") and no NFQUEUE (" + str(f["nfqueue"]) + ")")


def _need(feature, fault):
    why = features()[feature]
    if why:
        raise Unsupported(f"{fault}: {why}")


class Host:
    """A network namespace with one address on the bed's bridge."""

    def __init__(self, bed, name, index):
        self.bed = bed
        self.name = name
        self.ns = f"{bed.id}-{name}"
        self.ip = f"198.18.{(index + 2) // 256}.{(index + 2) % 256}"
        self.wrap = ["ip", "netns", "exec", self.ns]
        self.queues = itertools.count(1)  # NFQUEUE numbers (per namespace)
        self.classes = itertools.count(2)  # tc class minors and filter prios on eth0
        self.htb = False

    def run(self, argv, input=None, check=True, timeout=30):
        return run(self.wrap + list(argv), input=input, check=check, timeout=timeout)

    def nft(self, script):
        self.run(["nft", "-f", "-"], input=script)


def _host(x):
    return x if isinstance(x, Host) else x.host


class Fault:
    """One applied fault; undo() (or leaving the with block) takes it back, once."""

    def __init__(self, bed, what):
        self.bed = bed
        self.what = what
        self._undo = []
        self.done = False

    def on_undo(self, fn):
        self._undo.append(fn)

    def undo(self):
        if self.done:
            return
        self.done = True
        errors = []
        for fn in reversed(self._undo):
            try:
                fn()
            except Exception as e:  # undo every part, report the first failure
                errors.append(e)
        if self in self.bed.faults:
            self.bed.faults.remove(self)
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.undo()

    def __repr__(self):
        return f"Fault({self.what})"


_beds = []
_ids = itertools.count()
_stale_done = False


def _close_all():
    for b in list(_beds):
        b.close()


harness.at_exit(_close_all)


class Bed:
    """The namespaces, the bridge and the nodes of one test; close() (or the with block) undoes every fault, stops
    the cluster's processes and deletes the namespaces."""

    def __init__(self, c, ticktime=None):
        global _stale_done
        why = unavailable()
        if why:
            raise Unsupported(f"network namespaces: {why}")
        if not _stale_done:
            _stale_done = True
            cleanup_stale()
        self.c = c
        self.ticktime = ticktime
        self.id = f"{PREFIX}{os.getpid()}-{next(_ids)}"
        self.sw = f"{self.id}-sw"
        self.hosts = {}
        self.faults = []
        self._fault_ids = itertools.count(1)
        self._lock = threading.Lock()
        _beds.append(self)
        run(["ip", "netns", "add", self.sw])
        run(["ip", "-n", self.sw, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.sw, "link", "set", "br0", "up"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- hosts and nodes

    def host(self, name):
        """The namespace called name (created on first use) with the next free address."""
        with self._lock:
            if name in self.hosts:
                return self.hosts[name]
            h = Host(self, name, len(self.hosts))
            self.hosts[name] = h
        run(["ip", "netns", "add", h.ns])
        veth = f"v{len(self.hosts)}"
        run(["ip", "-n", self.sw, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns])
        run(["ip", "-n", self.sw, "link", "set", veth, "master", "br0", "up"])
        run(["ip", "-n", h.ns, "link", "set", "lo", "up"])
        run(["ip", "-n", h.ns, "addr", "add", f"{h.ip}/15", "dev", "eth0"])
        run(["ip", "-n", h.ns, "link", "set", "eth0", "up"])
        return h

    def _epmd(self, h):
        self.c.start(h.wrap + harness.otp_argv(["epmd", "-port", str(self.c.epmd_port)]), name=f"epmd in {h.name}")
        names = h.wrap + harness.otp_argv(["epmd", "-port", str(self.c.epmd_port), "-names"])
        harness.wait_until(lambda: run(names, check=False).returncode == 0, 10, f"epmd in {h.ns}")

    def _tick(self, kind):
        if self.ticktime is None:
            return []
        if kind == "cnode":
            return ["--net-ticktime", str(self.ticktime)]
        if kind == "erl":
            return ["-kernel", "net_ticktime", str(self.ticktime)]
        return ["--erl", f"-kernel net_ticktime {self.ticktime}"]

    def _tag(self, n, h, kind):
        n.host, n.kind, n.short = h, kind, h.name
        return n

    def cnode(self, name, hidden=False, extra=(), wait=True):
        """cnode --name NAME@IP with its embedded EPMD, in a namespace of its own."""
        h = self.host(name)
        n = start_cnode(self.c, name=f"{name}@{h.ip}", wrap=h.wrap, hidden=hidden, wait=wait,
                        extra=["--embedded-epmd"] + self._tick("cnode") + list(extra))
        return self._tag(n, h, "cnode")

    def erl(self, name, hidden=False, args=()):
        """erl -name NAME@IP with an epmd of its own, in a namespace of its own."""
        h = self.host(name)
        self._epmd(h)
        n = self.c.erl(None, name=f"{name}@{h.ip}", wrap=h.wrap, hidden=hidden, args=self._tick("erl") + list(args))
        return self._tag(n, h, "erl")

    def elixir(self, name, hidden=False, args=()):
        """elixir --name NAME@IP with an epmd of its own, in a namespace of its own."""
        h = self.host(name)
        self._epmd(h)
        n = self.c.elixir(None, name=f"{name}@{h.ip}", wrap=h.wrap, hidden=hidden,
                          args=self._tick("elixir") + list(args))
        return self._tag(n, h, "elixir")

    def start(self, host, argv, name=None):
        """Any other program inside host's namespace (stopped with the cluster)."""
        h = host if isinstance(host, Host) else self.host(host)
        return self.c.start(h.wrap + [str(x) for x in argv], name=name or f"{argv[0]} in {h.name}")

    # --- faults

    def _fault(self, what):
        f = Fault(self, what)
        self.faults.append(f)
        return f

    def _nft_rule(self, f, ns, family, hook, rule):
        """A table of its own per rule in namespace ns, so that undo is deleting the table."""
        table = f"cnft_{next(self._fault_ids)}"
        run(["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=f"table {family} {table} {{\n chain c {{ type filter hook {hook} priority 0; policy accept;\n"
                  f"  {rule}\n }}\n}}\n")
        f.on_undo(lambda: run(["ip", "netns", "exec", ns, "nft", "delete", "table", family, table]))

    def _wire(self, f, rule):
        """A rule on the bridge's forward path in the switch namespace: on the wire, between the nodes."""
        self._nft_rule(f, self.sw, "bridge", "forward", rule)

    def _pairs(self, a, b, both):
        ha = _host(a)
        hb = _host(b) if b is not None else None
        pairs = [(ha, hb)]
        if both:
            if hb is None:
                raise ValueError("both=True needs a destination")
            pairs.append((hb, ha))
        return pairs

    @staticmethod
    def _dst(hb):
        return f"ip daddr {hb.ip} " if hb is not None else ""

    def _apply(self, f, fn):
        try:
            fn()
        except BaseException:
            f.undo()
            raise
        return f

    def cut(self, a, b, one_way=False):
        """a's packets to b are dropped on the wire, and b's to a unless one_way."""
        _need("nft", "cut")
        f = self._fault(f"cut {_host(a).name} {'->' if one_way else '<->'} {_host(b).name}")

        def go():
            for x, y in self._pairs(a, b, not one_way):
                self._wire(f, f"ip saddr {x.ip} ip daddr {y.ip} drop")
        return self._apply(f, go)

    def partition(self, sides):
        """Cuts both ways between every two nodes on different sides (lists of nodes or hosts)."""
        _need("nft", "partition")
        names = " | ".join(",".join(_host(x).name for x in s) for s in sides)
        f = self._fault(f"partition {names}")

        def go():
            for i, s in enumerate(sides):
                mine = ", ".join(_host(x).ip for x in s)
                others = ", ".join(_host(y).ip for t in sides[:i] + sides[i + 1:] for y in t)
                if mine and others:
                    self._wire(f, f"ip saddr {{ {mine} }} ip daddr {{ {others} }} drop")
        return self._apply(f, go)

    def loss(self, a, b, pct, both=False):
        """Drops pct percent of a's packets to b (None: to every node) on the wire, chosen at random by the
        kernel."""
        _need("nft", "loss")
        f = self._fault(f"loss {pct}% {_host(a).name} -> {_host(b).name if b is not None else '*'}")

        def go():
            for x, y in self._pairs(a, b, both):
                self._wire(f, f"ip saddr {x.ip} {self._dst(y)}numgen random mod 10000 < {int(pct * 100)} drop")
        return self._apply(f, go)

    def duplicate(self, a, b, pct, both=False):
        """Sends pct percent of a's packets to b twice (b may not be None)."""
        _need("nft", "duplicate")
        f = self._fault(f"duplicate {pct}% {_host(a).name} -> {_host(b).name}")

        def go():
            for x, y in self._pairs(a, b, both):
                # dup (nft_dup_ipv4) exists for the ip family only, so it sits in a's output hook
                self._nft_rule(f, x.ns, "ip", "output",
                               f"ip daddr {y.ip} numgen random mod 10000 < {int(pct * 100)} dup to {y.ip}")
        return self._apply(f, go)

    def _htb(self, h):
        if not h.htb:
            h.run(["tc", "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb"])
            h.htb = True

    def _tc_class(self, f, x, y, rate, leaf):
        """An HTB class on x's eth0 for the packets to y (None: all), with the rate and the leaf qdisc argv."""
        self._htb(x)
        n = next(x.classes)
        x.run(["tc", "class", "add", "dev", "eth0", "parent", "1:", "classid", f"1:{n}", "htb", "rate", rate,
               "ceil", rate])
        f.on_undo(lambda: x.run(["tc", "class", "del", "dev", "eth0", "classid", f"1:{n}"]))
        if leaf:
            x.run(["tc", "qdisc", "add", "dev", "eth0", "parent", f"1:{n}", "handle", f"{n}:"] + leaf)
            f.on_undo(lambda: x.run(["tc", "qdisc", "del", "dev", "eth0", "parent", f"1:{n}", "handle", f"{n}:"]))
        match = ["match", "ip", "dst", f"{y.ip}/32"] if y is not None else ["match", "ip", "dst", NET]
        x.run(["tc", "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", str(n), "u32"] +
              match + ["flowid", f"1:{n}"])
        f.on_undo(lambda: x.run(["tc", "filter", "del", "dev", "eth0", "parent", "1:", "prio", str(n)]))

    def delay(self, a, b, ms, jitter_ms=0, reorder_pct=0, both=False, seed=0):
        """a's packets to b (None: to every node) wait ms milliseconds, plus a uniform jitter in +-jitter_ms (which
        reorders packets closer than the jitter); reorder_pct percent go at once."""
        backend = delay_backend()
        f = self._fault(f"delay {ms}ms+-{jitter_ms} {_host(a).name} -> {_host(b).name if b is not None else '*'}"
                        f" ({backend})")

        def go():
            for x, y in self._pairs(a, b, both):
                if backend == "netem":
                    leaf = ["netem", "delay", f"{ms}ms"] + ([f"{jitter_ms}ms"] if jitter_ms else [])
                    if reorder_pct:
                        leaf += ["reorder", f"{100 - reorder_pct}%"]
                    self._tc_class(f, x, y, "10gbit", leaf)
                    continue
                q = next(x.queues)
                p = self.start(x, [sys.executable, DELAYER, "--queue", str(q), "--delay", str(ms), "--jitter",
                                   str(jitter_ms), "--reorder", str(reorder_pct), "--seed", str(seed)],
                               name=f"delayer {q} in {x.name}")
                f.on_undo(p.stop)  # after the rule is gone (undo runs in reverse): it lets what it holds go
                p.wait_for_line(f"ready queue {q}", timeout=10)
                rule = ["OUTPUT", "-o", "eth0", "-d", y.ip if y is not None else NET, "-j", "NFQUEUE",
                        "--queue-num", str(q), "--queue-bypass"]
                x.run(["iptables", "-w", "-A"] + rule)
                f.on_undo(lambda x=x, rule=rule: x.run(["iptables", "-w", "-D"] + rule))
        return self._apply(f, go)

    def limit(self, a, b, kbit, both=False):
        """a's packets to b (None: to every node) share a rate of kbit kilobits per second (HTB)."""
        _need("htb", "limit")
        f = self._fault(f"limit {kbit}kbit {_host(a).name} -> {_host(b).name if b is not None else '*'}")

        def go():
            for x, y in self._pairs(a, b, both):
                self._tc_class(f, x, y, f"{kbit}kbit", None)
        return self._apply(f, go)

    def freeze(self, node):
        """SIGSTOP to the node's process group; undo sends SIGCONT."""
        f = self._fault(f"freeze {node.short}")
        os.killpg(node.p.pid, signal.SIGSTOP)

        def thaw():
            try:
                os.killpg(node.p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        f.on_undo(thaw)
        return f

    def kill9(self, node):
        """SIGKILL to the node's process group (not undone: start a new node)."""
        node.kill9()

    def heal(self):
        """Undoes every fault still applied (all of them, then raises the first failure)."""
        errors = []
        for f in list(reversed(self.faults)):
            try:
                f.undo()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def close(self):
        if self not in _beds:
            return
        _beds.remove(self)
        try:
            self.heal()
        finally:
            self.c.close()
            for h in self.hosts.values():
                delete_namespace(h.ns)
            delete_namespace(self.sw)
