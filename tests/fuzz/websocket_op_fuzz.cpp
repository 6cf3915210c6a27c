// libFuzzer harness: the WebSocket gateway's protocol. The input is a
// client's messages (separated by NUL bytes), sent on one connection to a
// gateway with a client token key; every answer must be one JSON object
// with a `type`, whatever the client sent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/websocket_broadcaster/gateway.hpp"
#include "runtime/cluster/auth.hpp"

namespace {

/// Where the gateway's answers go: checked as they come.
class sink_session : public troupe::http::ws_session {
public:
  explicit sink_session(uint64_t id) : ws_session(id) {
  }
  void send(std::shared_ptr<const std::string> text) override {
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (!j.is_object() || !j.contains("type"))
      std::abort();
  }
  void close(uint16_t code, std::string reason) override {
    if (code < 1000 || code > 4999 || reason.size() > 123)
      std::abort();
  }
  std::string remote() const override {
    return "127.0.0.1";
  }
};

troupe::ws::gateway& the_gateway() {
  static auto gw = [] {
    troupe::ws::gateway_settings s;
    s.cluster = "fuzz";
    s.token_key = std::string(32, 'k');
    s.rate = 1e9;
    s.burst = 1e9;
    return std::make_unique<troupe::ws::gateway>(s);
  }();
  return *gw;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static uint64_t next_id = 0;
  auto& gw = the_gateway();
  auto s = std::make_shared<sink_session>(++next_id);
  gw.on_open(s, "/ws");
  std::string input{reinterpret_cast<const char*>(data), size};
  size_t pos = 0;
  while (pos <= input.size()) {
    auto end = input.find('\0', pos);
    if (end == std::string::npos)
      end = input.size();
    gw.on_text(s, input.substr(pos, end - pos));
    pos = end + 1;
  }
  gw.sweep();
  gw.on_close(s, "done");
  return 0;
}
