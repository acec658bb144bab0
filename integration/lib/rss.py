"""A process's resident set, read from /proc, and a sampler of its peak (used by the memory tests and the overload
scenarios)."""
import threading


def rss(pid):
    """The process's resident set in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Peak:
    """Samples a process's RSS every 50 ms in a thread until stopped; .peak is the largest seen."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, rss(pid), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, AssertionError):
                return

    def stop(self):
        self._stop.set()
        self._t.join()
        return self.peak
