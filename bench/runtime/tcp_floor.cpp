// The physical floor for bench/runtime: a raw loopback TCP round trip and raw loopback TCP bandwidth, between two
// processes (fork), blocking sockets, TCP_NODELAY. Prints one line of figures.
//   tcp_floor rtt N        N round trips of 32 bytes: "rtt_us p50 p99 mean"
//   tcp_floor bw MIB       MIB MiB one way, 1 MiB writes: "bw_mbs MB/s"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {
bool full(int fd, char* p, size_t n, bool rd) {
  while (n) {
    ssize_t k = rd ? read(fd, p, n) : write(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const bool rtt = std::strcmp(argv[1], "rtt") == 0;
  const long n = std::atol(argv[2]);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) || listen(ls, 1) ||
      getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len))
    return 1;
  int one = 1;
  const size_t chunk = 1 << 20;
  std::vector<char> buf(chunk);
  pid_t child = fork();
  if (child == 0) {
    int c = accept(ls, nullptr, nullptr);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rtt) {
      while (full(c, buf.data(), 32, true) && full(c, buf.data(), 32, false)) {}
    } else {
      while (read(c, buf.data(), chunk) > 0) {}
      full(c, buf.data(), 1, false);
    }
    _exit(0);
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a)) return 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  using clk = std::chrono::steady_clock;
  if (rtt) {
    std::vector<double> t;
    t.reserve(static_cast<size_t>(n));
    for (long i = 0; i < n; ++i) {
      auto t0 = clk::now();
      if (!full(s, buf.data(), 32, false) || !full(s, buf.data(), 32, true)) return 1;
      t.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    }
    double sum = 0;
    for (double x : t) sum += x;
    std::sort(t.begin(), t.end());
    std::printf("rtt_us %.2f %.2f %.2f\n", t[t.size() / 2], t[t.size() * 99 / 100], sum / static_cast<double>(n));
  } else {
    auto t0 = clk::now();
    for (long i = 0; i < n; ++i)
      if (!full(s, buf.data(), chunk, false)) return 1;
    shutdown(s, SHUT_WR);
    full(s, buf.data(), 1, true);  // the reader has taken everything
    double secs = std::chrono::duration<double>(clk::now() - t0).count();
    std::printf("bw_mbs %.1f\n", static_cast<double>(n) * 1.048576 / secs);
  }
  close(s);
  waitpid(child, nullptr, 0);
  return 0;
}
