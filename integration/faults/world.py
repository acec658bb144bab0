"""What the fault scenarios share: a mixed cluster on a test bed, seen through a hidden driver node (faults_drv.erl)
that is never cut off."""
import os
import threading
import time

import harness

DRV_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faults_drv.erl")


def lit(names):
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


class World:
    """Nodes by short name (each a harness node with .node, .kind, .host) and the driver `drv`."""

    def __init__(self, bed, ctx, spec, beam_args=(), cnode_args=()):
        """spec: [(short name, 'erl' | 'elixir' | 'cnode')], started at once (in threads). BEAM nodes run pg's
        default scope (kernel's start_pg). cnode_args: a list, or a function of the short name giving one."""
        self.bed, self.ctx = bed, ctx
        self.nodes = {}
        errors = []

        def start(name, kind):
            try:
                if kind == "drv":  # hidden: it takes part in no mesh, no pg and no global
                    self._driver()
                elif kind == "cnode":
                    self.nodes[name] = bed.cnode(name, extra=list(cnode_args(name) if callable(cnode_args)
                                                                  else cnode_args))
                elif kind == "erl":
                    self.nodes[name] = bed.erl(name, args=["-kernel", "start_pg", "true"] + list(beam_args))
                else:
                    self.nodes[name] = bed.elixir(name, args=["--erl", "-kernel start_pg true"] + list(beam_args))
            except Exception as e:
                errors.append(e)
        for name, _ in list(spec) + [("drv", "drv")]:
            bed.host(name)  # addresses in spec order, whatever order the nodes come up in
        threads = [threading.Thread(target=start, args=s) for s in list(spec) + [("drv", "drv")]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.order = [name for name, _ in spec]

    def _driver(self):
        self.drv = self.bed.erl("drv", hidden=True)
        r = self.drv.eval(f'{{ok, faults_drv, B}} = compile:file("{DRV_SRC}", [binary, return_errors]), '
                          f'code:load_binary(faults_drv, "{DRV_SRC}", B)')
        assert r.startswith("{module,faults_drv}"), r

    # --- naming

    def n(self, short):
        return self.nodes[short]

    def all(self):
        return [self.nodes[s] for s in self.order]

    @staticmethod
    def kinds(nodes):
        return "[" + ", ".join(f"{{'{n.node}', {'cnode' if n.kind == 'cnode' else 'beam'}}}" for n in nodes) + "]"

    def sides_lit(self, sides):
        return "[" + ", ".join(self.kinds(s) for s in sides) + "]"

    def e(self, expr, timeout=60):
        return self.drv.eval(expr, timeout=timeout)

    # --- connections

    def meshed(self, sides):
        return self.e(f"faults_drv:meshed({self.sides_lit(sides)})") == "true"

    def shape(self, nodes=None):
        return self.e(f"faults_drv:shape({self.kinds(nodes or self.all())})")

    def connect(self, nodes=None):
        self.e(f"faults_drv:ping_all({self.kinds(nodes or self.all())})")

    def wait_mesh(self, nodes=None, timeout=60, check=None):
        """Dials what is not connected (every 2 s) until nodes are a full mesh and check() holds; the seconds it
        took."""
        nodes = nodes or self.all()
        t0 = time.monotonic()
        last = [0.0]

        def ok():
            if self.meshed([nodes]) and (check is None or check()):
                return True
            if time.monotonic() - last[0] > 2:
                last[0] = time.monotonic()
                self.connect(nodes)
            return False
        try:
            harness.wait_until(ok, timeout, "the full mesh", interval=0.25)
        except AssertionError:
            raise AssertionError(f"no full mesh within {timeout}s: {self.shape(nodes)}")
        return time.monotonic() - t0

    def wait_stable_shape(self, nodes=None, hold=2.0, timeout=60):
        """Waits until the connection graph has not changed for `hold` seconds; returns it."""
        nodes = nodes or self.all()
        seen = {"shape": None, "since": 0.0}

        def ok():
            s = self.shape(nodes)
            now = time.monotonic()
            if s != seen["shape"]:
                seen["shape"], seen["since"] = s, now
                return False
            return now - seen["since"] >= hold
        harness.wait_until(ok, timeout, "a stable connection graph", interval=0.25)
        return seen["shape"]

    def connected(self, a, b):
        return f"'{b.node}'" in self.e(f"faults_drv:nodes_of('{a.node}')")

    # --- global

    def sync_all(self, nodes=None, deadline_ms=20000):
        """global:sync() on every node (cnode's too) among nodes, each with a deadline; the longest it took (ms).
        Fails on a sync that does not return within the deadline."""
        r = self.e(f"faults_drv:gl_sync_all({self.kinds(nodes or self.all())}, {deadline_ms})",
                   timeout=deadline_ms / 1000 + 30)
        assert r.startswith("{ok,"), f"global:sync() with a deadline of {deadline_ms} ms: {r}"
        return int(r[4:-1])


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))]
