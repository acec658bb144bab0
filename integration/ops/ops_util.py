"""Helpers of the ops tests: cnode with its HTTP server, a real HTTP client (curl), a Prometheus text parser, and a
started program whose stderr is kept apart from its stdout."""
import json
import os
import re
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

HTTP_LINE = "http: serving /status, /metrics and /health on 127.0.0.1:"


def start_http_cnode(c, extra=(), **kw):
    """cnode with --http-port 0; its .http is the port the log line tells."""
    cn = start_cnode(c, extra=["--http-port", "0"] + list(extra), **kw)
    line = cn.wait_for_line(HTTP_LINE, timeout=10)
    cn.http = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    return cn


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<HTTP {self.status} {self.headers} {self.body[:300]!r}>"


def curl(port, path, *opts, timeout=10):
    """One request with curl (-i: the head comes back too); returns a Response. Header names are lower-cased."""
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", str(timeout), *opts, f"http://127.0.0.1:{port}{path}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
    assert r.returncode == 0, f"curl {opts} {path}: exit {r.returncode}: {r.stderr.decode(errors='replace')}"
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Response(status, headers, body.decode("utf-8"))


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """Prometheus text format 0.0.4: samples as (name, labels, value) and the TYPE of each family."""

    def __init__(self, text):
        self.text = text
        self.samples = []
        self.types = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                self.types[name] = kind
            elif line and not line.startswith("#"):
                m = _SAMPLE.match(line)
                assert m, f"not a sample line: {line!r}"
                labels = {k: re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(x.group(1), x.group(1)), v)
                          for k, v in _LABEL.findall(m.group(3) or "")}
                self.samples.append((m.group(1), labels, float(m.group(4))))

    def get(self, name, **labels):
        """The value of the one sample of name whose labels include labels, None when there is none."""
        found = [v for n, l, v in self.samples if n == name and all(l.get(k) == w for k, w in labels.items())]
        assert len(found) <= 1, f"{name}{labels}: {len(found)} samples"
        return found[0] if found else None

    def all(self, name):
        return [(l, v) for n, l, v in self.samples if n == name]

    def sum(self, name):
        return sum(v for _, v in self.all(name))


def metrics(port):
    r = curl(port, "/metrics")
    assert r.status == 200, r
    return Metrics(r.body)


def status(port):
    r = curl(port, "/status")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    return r.json()


class SplitProc:
    """A started program with stdout and stderr read apart; stopped by Cluster.close() like a harness.Proc."""

    def __init__(self, c, argv, name, env=None, stderr_reader=True):
        self.name, self.argv = name, argv
        self.out, self.err = [], []
        self._cv = threading.Condition()
        self.p = subprocess.Popen(argv, env={**os.environ, **c.env(**(env or {}))}, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        harness._live.append(self.p)
        c.procs.append(self)
        threading.Thread(target=self._pump, args=(self.p.stdout, self.out), daemon=True).start()
        if stderr_reader:
            threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True).start()

    def _pump(self, f, into):
        for raw in f:
            with self._cv:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()

    def wait_for_err(self, needle, timeout=10.0):
        def seen():
            with self._cv:
                return next((l for l in self.err if needle in l), None)
        return harness.wait_until(seen, timeout, f"{self.name}: a stderr line with {needle!r}")

    def output(self):
        with self._cv:
            return "stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err)

    def stop(self):
        harness._stop(self.p)
