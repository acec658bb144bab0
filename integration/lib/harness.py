"""Live-node test harness: free ports, a private EPMD per test, erl/elixir nodes driven by expressions,
condition waits with deadlines, and every started process stopped on exit (also on failure or a signal).

A test file defines functions named test_* and ends with `harness.main(globals())`, which runs them, prints
`N passed, N failed` and exits non-zero on any failure. Each test gets a fresh Cluster:

    def test_ping(c):
        epmd = c.epmd()                      # real epmd on a free port
        a = c.erl("a")                       # erl -sname a, ERL_EPMD_PORT=epmd
        assert a.eval("net_adm:ping(a@localhost)") == "pong"

CNODE_OTP=27 or CNODE_OTP=29 runs every BEAM program the harness starts (epmd, erl, elixir, and erlc through
otp_argv) from that OTP release, inside the Debian chroot of scripts/otp-chroot (built on first use; needs root).
CNODE_OTP=25, the default, is the machine's own OTP. cnode and the test's own programs stay outside: the chroot
shares the loopback and /tmp, where each Cluster keeps its files.
"""
import atexit
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BIN_DIR = os.environ.get("CNODE_BIN_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin")
HOST = "localhost"
OTP = os.environ.get("CNODE_OTP", "25")
_OTP_CHROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "otp-chroot"))
_BEAM_PROGRAMS = {"epmd", "erl", "elixir", "erlc", "escript", "iex"}
if OTP not in ("25", "27", "29"):
    raise SystemExit(f"CNODE_OTP={OTP}: only 25, 27 and 29 are known")
_ready = {"25"}


def _ensure_otp(otp):
    """Builds the release's chroot the first time (a minute or two) and puts cnode's binaries in it."""
    if otp in _ready:
        return
    r = subprocess.run([_OTP_CHROOT, otp], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=dict(os.environ, CNODE_BIN_DIR=os.path.abspath(BIN_DIR)))
    if r.returncode != 0:
        raise SystemExit(f"scripts/otp-chroot {otp} failed:\n{r.stderr}")
    _ready.add(otp)


_ensure_otp(OTP)
_live = []  # every Popen we started, so that nothing outlives the test run
_cleanups = []  # functions run after the processes are stopped, at exit and on a signal (netns.py's namespaces)


def at_exit(fn):
    """Runs fn once the processes are stopped when the run ends, also on SIGTERM/SIGINT/SIGHUP (where atexit does
    not run). fn must be safe to call when there is nothing left to clean."""
    _cleanups.append(fn)


def _kill_all():
    for p in list(_live):
        _stop(p)
    while _cleanups:
        try:
            _cleanups.pop()()
        except Exception:
            traceback.print_exc()


def _stop(p, grace=2.0):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    if p in _live:
        _live.remove(p)


atexit.register(_kill_all)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, lambda s, f: (_kill_all(), os._exit(128 + s)))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout=10.0, what="condition", interval=0.02):
    """Polls cond() until it returns a truthy value, which is returned; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # a condition that raises is just not met yet
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)  # polling interval of a deadline wait, not synchronisation


def otp_argv(argv, otp=None):
    """argv for the BEAM release under test (or `otp`): epmd, erl, elixir, erlc... run inside its chroot."""
    argv, otp = list(argv), otp or OTP
    if otp != "25" and argv and argv[0] in _BEAM_PROGRAMS:
        _ensure_otp(otp)
        return [_OTP_CHROOT, otp] + argv
    return argv


def bin_path(name):
    return os.path.abspath(os.path.join(BIN_DIR, name))


class Proc:
    """A started program, its output collected in the background."""

    def __init__(self, argv, env=None, stdin=subprocess.DEVNULL, name=None):
        self.name = name or os.path.basename(argv[0])
        self.argv = argv
        self.lines = []
        self._eof = False  # the reader has seen the end of the output: every line is in self.lines
        self._cv = threading.Condition()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(argv, env=full_env, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        _live.append(self.p)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def output(self):
        with self._cv:
            return "\n".join(self.lines)

    def wait_for_line(self, needle, timeout=10.0):
        """Waits until a line of output contains needle; returns that line."""
        deadline = time.monotonic() + timeout
        with self._cv:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if needle in line:
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                # A process that exited may still have lines in the pipe: give up only at end of output.
                if left <= 0 or (self._eof and seen == len(self.lines)):
                    raise AssertionError(f"{self.name}: no line with {needle!r} within {timeout}s; "
                                         f"output:\n{self.output()}")
                self._cv.wait(min(left, 0.2))

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        _stop(self.p)

    def kill9(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()


# An evaluation agent run inside erl: reads one expression a line from stdin, prints the result on one line
# behind a marker. Errors come back as {'$error', Class, Reason}.
_ERL_AGENT = r"""
Loop = fun Loop() ->
  case io:get_line('') of
    eof -> halt(0);
    Line ->
      Res = try
              {ok, Toks, _} = erl_scan:string(Line),
              {ok, Exprs} = erl_parse:parse_exprs(Toks),
              {value, V, _} = erl_eval:exprs(Exprs, []),
              V
            catch C:R -> {'$error', C, R}
            end,
      io:put_chars(["@@RESULT ", io_lib:format("~0tp", [Res]), "\n"]),
      Loop()
  end
end, Loop().
"""

_EX_AGENT = r"""
loop = fn loop ->
  case IO.gets("") do
    :eof -> System.halt(0)
    line ->
      res = try do
        {v, _} = Code.eval_string(line)
        v
      catch c, r -> {:"$error", c, r}
      end
      IO.puts("@@RESULT " <> inspect(res, limit: :infinity, printable_limit: :infinity, width: :infinity))
      loop.(loop)
  end
end
loop.(loop)
"""


class BeamNode(Proc):
    """An erl or elixir node whose expressions the test evaluates: eval() returns the printed result."""

    def __init__(self, argv, env, node, elixir):
        super().__init__(argv, env=env, stdin=subprocess.PIPE, name=node)
        self.node = node
        self.elixir = elixir
        self._results = 0
        self._lock = threading.Lock()

    def eval(self, expr, timeout=30.0):
        """Evaluates one expression (Erlang ends with '.', added when missing) and returns the printed value."""
        return self.eval_async(expr)(timeout)

    def eval_async(self, expr):
        """Sends the expression without waiting; returns result(timeout=30.0), which waits for its value. Starts
        the same thing on several nodes in one moment."""
        expr = " ".join(expr.strip().splitlines())
        if not self.elixir and not expr.endswith("."):
            expr += "."
        with self._lock:
            self.p.stdin.write((expr + "\n").encode())
            self.p.stdin.flush()
            self._results += 1
            want = self._results
        return lambda timeout=30.0: self._result(expr, want, timeout)

    def _result(self, expr, want, timeout):
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                results = [l for l in self.lines if l.startswith("@@RESULT ")]
                if len(results) >= want:
                    out = results[want - 1][len("@@RESULT "):]
                    if out.startswith("{'$error'") or out.startswith('{:"$error"'):
                        raise AssertionError(f"{self.node}: {expr} raised {out}")
                    return out
                left = deadline - time.monotonic()
                if left <= 0 or self.p.poll() is not None:
                    raise AssertionError(f"{self.node}: no result for {expr!r} within {timeout}s; "
                                         f"output:\n{self.output()}")
                self._cv.wait(min(left, 0.2))


class Cluster:
    """Everything one test starts: a private EPMD port, nodes, programs. close() stops them all."""

    def __init__(self):
        self.procs = []
        self.epmd_port = free_port()
        self.cookie = "c" + secrets.token_hex(8)
        self.tmp = tempfile.mkdtemp(prefix="cnode-it-")

    def env(self, **extra):
        e = {"ERL_EPMD_PORT": str(self.epmd_port), "HOME": self.tmp}
        e.update(extra)
        return e

    def start(self, argv, env=None, name=None, stdin=subprocess.DEVNULL):
        p = Proc(otp_argv(argv), env=self.env(**(env or {})), name=name, stdin=stdin)
        self.procs.append(p)
        return p

    def epmd(self):
        """The real epmd on this cluster's port; returns once it answers."""
        p = self.start(["epmd", "-port", str(self.epmd_port)], name="epmd")
        wait_until(lambda: _connects(self.epmd_port), 10, "epmd to listen")
        return p

    def erl(self, sname, cookie=None, hidden=False, args=(), env=None, otp=None, name=None, wrap=()):
        """An erl node of the release under test, or of `otp` (a mixed cluster). name: a long node name (-name)
        instead of sname@localhost; wrap: argv put in front (`ip netns exec NS`, as integration/lib/netns.py does)."""
        otp = otp or OTP
        node = name or f"{sname}@{HOST}"
        argv = ["erl", "-name" if name else "-sname", node, "-setcookie", cookie or self.cookie, "-noshell"]
        if hidden:
            argv.append("-hidden")
        argv += list(args) + ["-eval", _ERL_AGENT]
        n = BeamNode(list(wrap) + otp_argv(argv, otp), self.env(**(env or {})), node, elixir=False)
        self.procs.append(n)
        # ready when it answers; and it must be the release asked for
        release = n.eval("erlang:system_info(otp_release)")
        assert release == f'"{otp}"', f"{n.node} runs OTP {release}, not {otp}"
        n.otp = otp
        return n

    def elixir(self, sname, cookie=None, hidden=False, args=(), env=None, otp=None, name=None, wrap=()):
        """As erl(), an Elixir node."""
        otp = otp or OTP
        node = name or f"{sname}@{HOST}"
        argv = ["elixir", "--name" if name else "--sname", node, "--cookie", cookie or self.cookie]
        if hidden:
            argv += ["--hidden"]
        argv += list(args) + ["-e", _EX_AGENT]
        n = BeamNode(list(wrap) + otp_argv(argv, otp), self.env(**(env or {})), node, elixir=True)
        self.procs.append(n)
        release = n.eval("List.to_string(:erlang.system_info(:otp_release))", timeout=60)
        assert release == f'"{otp}"', f"{n.node} runs OTP {release}, not {otp}"
        n.otp = otp
        return n

    def close(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()


def _connects(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def main(namespace):
    """Runs every test_* function of the calling module, each with a fresh Cluster."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    only = sys.argv[1:]
    passed = failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        c = Cluster()
        t0 = time.monotonic()
        try:
            fn(c)
            passed += 1
            print(f"PASS {name} ({time.monotonic() - t0:.2f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - t0:.2f}s)", flush=True)
            traceback.print_exc()
            for p in c.procs:
                print(f"--- output of {p.name}:\n{p.output()}", flush=True)
        finally:
            c.close()
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed or not passed else 0)
