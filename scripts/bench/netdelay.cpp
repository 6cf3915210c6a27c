// netdelay: added network latency for scripts/hosts, where the kernel has
// no netem qdisc. Packets that an iptables rule sends to NFQUEUE queue
// `--queue` (in the namespace this runs in) are held for `--delay-ms` each
// and then accepted, in their order: every packet the rule matches is
// delayed by the same amount, as netem's `delay` does. The rule should use
// `--queue-bypass`, so that packets pass undelayed when this process is not
// running. Stops on SIGTERM/SIGINT (accepting what it holds) or after
// `--seconds`.
//
//   netdelay --queue 0 --delay-ms 20 [--seconds 3600]

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>

#include <libnetfilter_queue/libnetfilter_queue.h>

namespace {

using clock_type = std::chrono::steady_clock;

volatile std::sig_atomic_t stop_requested = 0;

void on_signal(int) {
  stop_requested = 1;
}

struct held {
  uint32_t id;
  clock_type::time_point due;
};

struct state {
  std::deque<held> queue;
  std::chrono::microseconds delay{0};
};

int on_packet(nfq_q_handle*, nfgenmsg*, nfq_data* nfa, void* data) {
  auto* st = static_cast<state*>(data);
  auto* hdr = nfq_get_msg_packet_hdr(nfa);
  if (hdr != nullptr)
    st->queue.push_back({ntohl(hdr->packet_id), clock_type::now() + st->delay});
  return 0;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "netdelay: %s\nusage: netdelay --queue N --delay-ms MS [--seconds S]\n", why);
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  long queue_num = -1;
  long delay_ms = -1;
  long seconds = 3600;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    char* end = nullptr;
    long value = std::strtol(argv[i + 1], &end, 10);
    if (end == argv[i + 1] || *end != '\0' || value < 0)
      usage(("bad value for " + key).c_str());
    if (key == "--queue")
      queue_num = value;
    else if (key == "--delay-ms")
      delay_ms = value;
    else if (key == "--seconds")
      seconds = value;
    else
      usage(("unknown option " + key).c_str());
  }
  if (argc % 2 == 0 || queue_num < 0 || queue_num > 65535 || delay_ms < 0 || delay_ms > 10000)
    usage("--queue (0-65535) and --delay-ms (0-10000) are required");
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  state st;
  st.delay = std::chrono::milliseconds(delay_ms);
  auto* h = nfq_open();
  if (h == nullptr)
    usage("nfq_open failed (run as root, in the namespace of the rule)");
  auto* qh = nfq_create_queue(h, static_cast<uint16_t>(queue_num), &on_packet, &st);
  if (qh == nullptr)
    usage("cannot bind the queue (another netdelay holds it?)");
  // Only the packet's id is needed for a verdict: no payload is copied.
  nfq_set_mode(qh, NFQNL_COPY_META, 0);
  nfq_set_queue_maxlen(qh, 65536);
  nfnl_rcvbufsiz(nfq_nfnlh(h), 16 * 1024 * 1024);
  int fd = nfq_fd(h);
  std::printf("netdelay: queue %ld, %ld ms\n", queue_num, delay_ms);
  std::fflush(stdout);
  auto until = clock_type::now() + std::chrono::seconds(seconds);
  alignas(8) char buf[65536];
  while (stop_requested == 0 && clock_type::now() < until) {
    int timeout_ms = 50;
    if (!st.queue.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::microseconds>(st.queue.front().due
                                                                        - clock_type::now());
      timeout_ms = left.count() <= 0 ? 0 : static_cast<int>((left.count() + 999) / 1000);
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) > 0) {
      for (;;) {
        auto n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
          break; // drained (or ENOBUFS: the kernel dropped some; they pass by bypass)
        nfq_handle_packet(h, buf, static_cast<int>(n));
      }
    }
    auto now = clock_type::now();
    while (!st.queue.empty() && st.queue.front().due <= now) {
      nfq_set_verdict(qh, st.queue.front().id, NF_ACCEPT, 0, nullptr);
      st.queue.pop_front();
    }
  }
  for (auto& x : st.queue)
    nfq_set_verdict(qh, x.id, NF_ACCEPT, 0, nullptr);
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}
