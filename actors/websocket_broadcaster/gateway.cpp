#include "actors/websocket_broadcaster/gateway.hpp"

#include <algorithm>
#include <chrono>
#include <regex>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "runtime/cluster/auth.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"

namespace troupe::ws {

using json = nlohmann::json;

/// One connected client.
struct gateway::client {
  std::weak_ptr<http::ws_session> session;
  uint64_t id = 0;
  std::string remote;
  /// Authenticated user (empty: anonymous), and its token's times.
  std::string user;
  bool is_operator = false;
  int64_t issued_s = 0;
  int64_t expires_s = 0;
  /// The last request other than `ping` (or the upgrade).
  std::chrono::steady_clock::time_point last_request;
  /// Channels as the client named them, and the internal ones they stand
  /// for (`alerts` is `alerts:<user>` for a user who is not an operator).
  std::map<std::string, std::string> subscriptions;
  /// The last publication this client got (a client on two of a
  /// message's channels gets it once).
  uint64_t last_seq = 0;
  /// Articles shown in this user's own personalised feeds and not read
  /// since, with the variant that ranked them, oldest first (at most
  /// `shown_kept`).
  std::deque<std::pair<std::string, std::string>> shown;
  // Token bucket, touched on the client's strand only.
  double tokens = 0;
  std::chrono::steady_clock::time_point refilled;
  uint32_t refused = 0;
};

namespace {

std::string url_decode(const std::string& x) {
  std::string out;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == '%' && i + 2 < x.size() && std::isxdigit(static_cast<unsigned char>(x[i + 1]))
        && std::isxdigit(static_cast<unsigned char>(x[i + 2]))) {
      out += static_cast<char>(std::stoi(x.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += x[i] == '+' ? ' ' : x[i];
    }
  }
  return out;
}

/// The value of `key` in the query of `target`.
std::string query_param(const std::string& target, const std::string& key) {
  auto q = target.find('?');
  if (q == std::string::npos)
    return {};
  auto query = target.substr(q + 1);
  size_t pos = 0;
  while (pos <= query.size()) {
    auto amp = query.find('&', pos);
    auto part = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    auto eq = part.find('=');
    if (eq != std::string::npos && url_decode(part.substr(0, eq)) == key)
      return url_decode(part.substr(eq + 1));
    if (amp == std::string::npos)
      break;
    pos = amp + 1;
  }
  return {};
}

bool valid_category(const std::string& x) {
  static const std::regex pattern{"^[a-z0-9_-]{1,32}$"};
  return std::regex_match(x, pattern);
}

/// Never throws: bytes that are not UTF-8 (from a query string) are replaced.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json with_id(json j, const std::string& request_id) {
  if (!request_id.empty())
    j["id"] = json::parse(request_id, nullptr, false);
  return j;
}

} // namespace

gateway::gateway(gateway_settings settings) : cfg_(std::move(settings)) {
}

void gateway::log(const std::string& line) const {
  if (cfg_.log)
    cfg_.log(line);
}

std::string gateway::error_json(const std::string& code, const std::string& message,
                                const std::string& request_id) {
  return dump(with_id({{"type", "error"}, {"error", code}, {"message", message}}, request_id));
}

std::string feed_json(const feed& f, const std::string& request_id) {
  json items = json::array();
  for (auto& r : f.items) {
    json item{{"id", r.item.id},
              {"headline", r.item.headline},
              {"category", r.item.category},
              {"bias", r.item.bias},
              {"published_at", r.item.published_ms},
              {"breaking", r.item.breaking},
              {"score", r.score}};
    if (f.source == "trending")
      item["reads"] = r.reads;
    else
      item["components"] = {{"affinity", r.affinity},
                            {"bias_alignment", r.bias_alignment},
                            {"recency", r.recency}};
    items.push_back(std::move(item));
  }
  json j{{"type", "feed"},
         {"user", f.user},
         {"source", f.source},
         {"degraded", f.degraded},
         {"default_preferences", f.default_preferences},
         {"candidates", f.candidates},
         {"items", std::move(items)}};
  if (!f.variant.empty())
    j["variant"] = f.variant;
  return dump(with_id(std::move(j), request_id));
}

void gateway::publish(const std::vector<std::string>& channels,
                      std::shared_ptr<const std::string> msg) {
  std::vector<std::shared_ptr<http::ws_session>> to;
  std::lock_guard<std::mutex> guard{mtx_};
  // Kept for `recent`: what a client that connects later missed.
  auto has = [&](const char* ch) {
    return std::find(channels.begin(), channels.end(), ch) != channels.end();
  };
  auto keep = [&](std::deque<kept_push>& q) {
    q.push_back({channels, msg});
    while (q.size() > recent_kept)
      q.pop_front();
  };
  if (has("breaking:*")) {
    keep(recent_breaking_);
  } else if (has("alerts")) {
    keep(recent_alerts_);
    ++counters_.alerts_pushed;
  }
  auto seq = ++publish_seq_;
  for (auto& ch : channels) {
    auto i = channels_.find(ch);
    if (i == channels_.end())
      continue;
    to.reserve(to.size() + i->second.size());
    for (auto& kv : i->second) {
      auto& c = *kv.second;
      if (c.last_seq == seq)
        continue;
      c.last_seq = seq;
      if (auto s = c.session.lock())
        to.push_back(std::move(s));
    }
  }
  counters_.pushes += to.size();
  // Under the lock: the server waits for it before it stops.
  if (deliver_) {
    deliver_(std::move(to), std::move(msg));
  } else {
    for (auto& s : to)
      s->send(msg);
  }
}

std::string gateway::cluster_view_locked() const {
  auto now = std::chrono::steady_clock::now();
  auto nodes = json::array();
  for (auto& [node, v] : views_) {
    auto x = json::parse(v.json, nullptr, false);
    if (x.is_discarded())
      continue;
    x["age_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(now - v.at).count();
    nodes.push_back(std::move(x));
  }
  return json{{"type", "cluster"}, {"at", unix_ms()}, {"self", cfg_.node},
              {"nodes", std::move(nodes)}}
    .dump();
}

void gateway::console_snapshot(const std::string& node, const std::string& text) {
  std::shared_ptr<const std::string> view;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    // Only nodes of the cluster send one (peers' hubs); bounded by them.
    if (views_.size() >= 256 && !views_.count(node))
      return;
    views_[node] = {text, std::chrono::steady_clock::now()};
    if (channels_.count("cluster") == 0)
      return;
    view = std::make_shared<const std::string>(cluster_view_locked());
  }
  publish({"cluster"}, std::move(view));
}

void gateway::set_console(command_fn fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  console_ = std::move(fn);
}

void gateway::set_deliver(http::deliver_fn fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  deliver_ = std::move(fn);
}

void gateway::answer(uint64_t session, std::shared_ptr<const std::string> msg) {
  std::shared_ptr<http::ws_session> s;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = clients_.find(session);
    if (i == clients_.end())
      return;
    s = i->second->session.lock();
  }
  if (s)
    s->send(std::move(msg));
}

void gateway::shown(uint64_t session, const feed& f) {
  if (f.variant.empty() || f.source != "ranker")
    return;
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = clients_.find(session);
  if (i == clients_.end() || i->second->user != f.user)
    return;
  if (!variants_.count(f.variant) && variants_.size() >= variants_kept)
    return;
  auto& v = variants_[f.variant];
  ++v.feeds;
  v.impressions += f.items.size();
  auto& shown = i->second->shown;
  for (auto& r : f.items) {
    auto at = std::find_if(shown.begin(), shown.end(),
                           [&](const auto& x) { return x.first == r.item.id; });
    if (at != shown.end())
      shown.erase(at);
    shown.emplace_back(r.item.id, f.variant);
  }
  while (shown.size() > shown_kept)
    shown.pop_front();
}

std::map<std::string, variant_counters> gateway::variants() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return variants_;
}

void gateway::attach(const caf::actor& worker) {
  std::lock_guard<std::mutex> guard{mtx_};
  workers_.push_back(worker);
}

void gateway::detach(const caf::actor_addr& worker) {
  std::function<void(caf::timespan)> after;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    workers_.erase(std::remove_if(workers_.begin(), workers_.end(),
                                  [&](const caf::actor& w) { return w.address() == worker; }),
                   workers_.end());
    if (!workers_.empty())
      return;
    after = after_;
  }
  if (after)
    after(cfg_.detach_grace);
  else
    close_if_detached();
}

void gateway::close_if_detached() {
  std::vector<std::shared_ptr<http::ws_session>> to_close;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!workers_.empty())
      return;
    for (auto& kv : clients_)
      if (auto s = kv.second->session.lock())
        to_close.push_back(std::move(s));
  }
  if (!to_close.empty())
    log("websocket-broadcaster stopped here: closing " + std::to_string(to_close.size())
        + " WebSocket clients (1012)");
  for (auto& s : to_close)
    s->close(http::close_code::service_restart, "websocket-broadcaster restarting: reconnect");
}

void gateway::set_store(std::shared_ptr<const news::article_store> store) {
  std::lock_guard<std::mutex> guard{mtx_};
  store_ = std::move(store);
}

void gateway::set_timer(std::function<void(caf::timespan)> after) {
  std::lock_guard<std::mutex> guard{mtx_};
  after_ = std::move(after);
}

void gateway::set_requester(const caf::actor& requester) {
  std::lock_guard<std::mutex> guard{mtx_};
  requester_ = requester;
}

caf::actor gateway::pick_worker() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (workers_.empty())
    return {};
  return workers_[next_worker_++ % workers_.size()];
}

void gateway::set_hub(const caf::actor& hub) {
  std::lock_guard<std::mutex> guard{mtx_};
  hub_ = hub;
}

size_t gateway::clients() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return clients_.size();
}

bool gateway::accepting(std::string& why) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!workers_.empty())
    return true;
  why = "no websocket-broadcaster instance runs on this node now";
  return false;
}

void gateway::on_open(const std::shared_ptr<http::ws_session>& s, const std::string& target) {
  auto c = std::make_shared<client>();
  c->session = s;
  c->id = s->id();
  c->remote = s->remote();
  c->tokens = cfg_.burst;
  c->refilled = std::chrono::steady_clock::now();
  c->last_request = c->refilled;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    clients_.emplace(c->id, c);
  }
  // A token in a URL ends up in browser histories, proxies and logs: it is
  // refused, and the client is told where it goes.
  if (!query_param(target, "token").empty()) {
    ++counters_.auth_failures;
    s->close(http::close_code::policy_violation,
             "a token goes in the first message ({\"op\":\"auth\"}), never in a URL");
  }
}

void gateway::on_close(const std::shared_ptr<http::ws_session>& s, const std::string& why) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = clients_.find(s->id());
  if (i == clients_.end())
    return;
  for (auto& kv : i->second->subscriptions) {
    auto ch = channels_.find(kv.second);
    if (ch != channels_.end()) {
      ch->second.erase(s->id());
      if (ch->second.empty())
        channels_.erase(ch);
    }
  }
  if (why.rfind("too slow", 0) == 0)
    log("WebSocket client " + i->second->remote + " disconnected: " + why);
  clients_.erase(i);
}

void gateway::on_text(const std::shared_ptr<http::ws_session>& s, std::string text) {
  client_ptr c;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = clients_.find(s->id());
    if (i == clients_.end())
      return;
    c = i->second;
  }
  ++counters_.requests;
  // The rate limit: a token bucket per client.
  auto now = std::chrono::steady_clock::now();
  auto elapsed = std::chrono::duration<double>(now - c->refilled).count();
  c->tokens = std::min(cfg_.burst, c->tokens + elapsed * cfg_.rate);
  c->refilled = now;
  if (c->tokens < 1) {
    ++counters_.rate_limited;
    if (++c->refused > cfg_.max_refused) {
      s->close(http::close_code::policy_violation, "rate limit exceeded");
      return;
    }
    // The answer carries the request's id, so that the client knows which
    // one to send again.
    std::string rid;
    auto j = json::parse(text, nullptr, false);
    if (j.is_object())
      if (auto id = j.find("id"); id != j.end() && id->is_primitive() && id->dump().size() <= 128)
        rid = dump(*id);
    reply(c, error_json("rate_limited",
                        "at most " + std::to_string(static_cast<int>(cfg_.rate))
                          + " requests per second",
                        rid));
    return;
  }
  c->tokens -= 1;
  c->refused = 0;
  handle(c, text);
}

bool gateway::authenticate(const client_ptr& c, const std::string& token,
                           const std::string& user, std::string& why) {
  auto now_s = unix_ms() / 1000;
  auto claims = cluster::verify_client_token(cfg_.token_key, cfg_.cluster, token, now_s);
  if (!claims) {
    // "not_authenticated: client token refused: expired" -> from "client".
    why = render(claims.error());
    if (auto colon = why.find(": "); colon != std::string::npos)
      why = why.substr(colon + 2);
    ++counters_.auth_failures;
    return false;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto r = revoked_.find(claims->user);
      r != revoked_.end() && claims->issued_at <= r->second) {
    why = "client token refused: revoked";
    ++counters_.auth_failures;
    return false;
  }
  if (!user.empty() && user != claims->user) {
    why = "the token is for another user";
    ++counters_.auth_failures;
    return false;
  }
  // A token may be renewed on an open connection, for the same user: the
  // connection's subscriptions are that user's.
  if (!c->user.empty() && c->user != claims->user) {
    why = "this connection is authenticated as another user; open a new one";
    ++counters_.auth_failures;
    return false;
  }
  c->user = claims->user;
  c->is_operator = claims->role == "operator";
  c->issued_s = claims->issued_at;
  c->expires_s = claims->expires_at;
  return true;
}

void gateway::revoke(const std::string& user, int64_t at_s) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& x = revoked_[user];
  x = std::max(x, at_s);
}

void gateway::set_revocations(const std::unordered_map<std::string, int64_t>& revoked) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& [user, at] : revoked) {
    auto& x = revoked_[user];
    x = std::max(x, at);
  }
}

std::shared_ptr<const gateway::trending_snapshot> gateway::trending() {
  // One request makes it; the others meanwhile wait for that one (not for
  // the gateway's lock), then share it.
  std::lock_guard<std::mutex> guard{trending_mtx_};
  auto now = std::chrono::steady_clock::now();
  if (trending_ && now - trending_->made < cfg_.trending_refresh)
    return trending_;
  std::shared_ptr<const news::article_store> store;
  {
    std::lock_guard<std::mutex> g{mtx_};
    store = store_;
  }
  auto snap = std::make_shared<trending_snapshot>();
  snap->made = now;
  if (store) {
    snap->candidates = store->size();
    snap->items = store->trending(100, unix_ms(), 24LL * 3600 * 1000);
  }
  trending_ = snap;
  return trending_;
}

void gateway::sweep() {
  auto now_s = unix_ms() / 1000;
  auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<std::shared_ptr<http::ws_session>, std::string>> to_close;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& kv : clients_) {
      auto& c = *kv.second;
      const char* why = nullptr;
      if (!c.user.empty()) {
        if (auto r = revoked_.find(c.user); r != revoked_.end() && c.issued_s <= r->second) {
          why = "token revoked";
          ++counters_.revoked;
        } else if (c.expires_s <= now_s) {
          why = "token expired";
          ++counters_.expired;
        }
      } else if (now - c.last_request > cfg_.unauthenticated_idle) {
        why = "idle without a token";
        ++counters_.idle_closed;
      }
      if (why)
        if (auto s = c.session.lock())
          to_close.emplace_back(std::move(s), why);
    }
  }
  for (auto& [s, why] : to_close)
    s->close(http::close_code::policy_violation, why);
}

void gateway::reply(const client_ptr& c, const std::string& text) {
  if (auto s = c->session.lock())
    s->send(std::make_shared<const std::string>(text));
}

namespace {

/// The internal channel a client's channel name stands for (`alerts` is
/// `alerts:<user>` for a user who is not an operator), or false after
/// `fail` told the client why it may not have it: `alerts` needs a token,
/// `cluster` (when `cluster_ok`) an operator's.
template <class Fail>
bool channel_for(const gateway::client& c, const std::string& ch, bool cluster_ok,
                 std::string& internal, Fail& fail, const std::string& rid) {
  internal = ch;
  if (ch == "cluster" && cluster_ok) {
    if (!c.is_operator) {
      fail("unauthorized", "the cluster channel is for operators", rid);
      return false;
    }
  } else if (ch == "alerts") {
    if (c.user.empty()) {
      fail("unauthorized", "the alerts channel needs a token (op \"auth\")", rid);
      return false;
    }
    if (!c.is_operator)
      internal = "alerts:" + c.user;
  } else if (ch != "breaking:*"
             && !(ch.rfind("breaking:", 0) == 0 && valid_category(ch.substr(9)))) {
    fail("unknown_channel",
         std::string{"channels are \"breaking:<category>\", \"breaking:*\", \"alerts\""}
           + (cluster_ok ? " and \"cluster\"" : ""),
         rid);
    return false;
  }
  return true;
}

} // namespace

void gateway::handle(const client_ptr& c, const std::string& text) {
  auto fail = [&](const std::string& code, const std::string& message,
                  const std::string& request_id = {}) {
    ++counters_.errors;
    reply(c, error_json(code, message, request_id));
  };
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    fail("invalid_json", "the message is not valid JSON");
    return;
  }
  if (!j.is_object()) {
    fail("invalid_request", "a request is a JSON object with an \"op\"");
    return;
  }
  std::string rid;
  if (auto id = j.find("id"); id != j.end()) {
    if (!id->is_primitive() || id->dump().size() > 128) {
      fail("invalid_request", "\"id\" must be a string or a number of at most 128 bytes");
      return;
    }
    rid = dump(*id);
  }
  auto op_it = j.find("op");
  if (op_it == j.end() || !op_it->is_string()) {
    fail("invalid_request", "a request needs \"op\" (a string)", rid);
    return;
  }
  auto op = op_it->get<std::string>();
  if (op != "ping")
    c->last_request = std::chrono::steady_clock::now();
  auto str = [&](const char* key) -> std::string {
    auto i = j.find(key);
    return i != j.end() && i->is_string() ? i->get<std::string>() : std::string{};
  };
  if (op == "ping") {
    reply(c, dump(with_id({{"type", "pong"}, {"time", unix_ms()}}, rid)));
  } else if (op == "auth") {
    std::string why;
    if (!authenticate(c, str("token"), str("user"), why)) {
      fail("unauthorized", why, rid);
      return;
    }
    reply(c, dump(with_id({{"type", "auth"},
                           {"ok", true},
                           {"user", c->user},
                           {"operator", c->is_operator},
                           {"expires_at", c->expires_s}},
                          rid)));
  } else if (op == "subscribe" || op == "unsubscribe") {
    auto ch = str("channel");
    std::string internal;
    if (!channel_for(*c, ch, true, internal, fail, rid))
      return;
    std::string view;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (op == "subscribe" && ch == "cluster")
        view = cluster_view_locked();
      if (op == "subscribe") {
        if (c->subscriptions.size() >= 64 && !c->subscriptions.count(ch)) {
          ++counters_.errors;
          reply(c, error_json("too_many_channels", "at most 64 channels per client", rid));
          return;
        }
        c->subscriptions[ch] = internal;
        channels_[internal][c->id] = c;
      } else {
        auto i = c->subscriptions.find(ch);
        if (i != c->subscriptions.end()) {
          auto sub = channels_.find(i->second);
          if (sub != channels_.end()) {
            sub->second.erase(c->id);
            if (sub->second.empty())
              channels_.erase(sub);
          }
          c->subscriptions.erase(i);
        }
      }
    }
    reply(c, dump(with_id(
               {{"type", op == "subscribe" ? "subscribed" : "unsubscribed"}, {"channel", ch}},
               rid)));
    // The view now, then every change.
    if (!view.empty())
      reply(c, view);
  } else if (op == "command") {
    // An operator's action from the live page, run by the node's console.
    if (!c->is_operator) {
      fail("unauthorized", "commands are for operators", rid);
      return;
    }
    auto action = str("action");
    auto target = str("target");
    if (action.empty() || target.empty() || action.size() > 32 || target.size() > 256) {
      fail("invalid_request", "a command needs \"action\" and \"target\" (strings)", rid);
      return;
    }
    command_fn run;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      run = console_;
    }
    if (!run) {
      fail("unavailable", "this node's console is not running now", rid);
      return;
    }
    run(c->id, rid, c->user, c->remote, action, target);
  } else if (op == "feed") {
    auto user = str("user");
    if (user.empty())
      user = c->user;
    if (c->user.empty() || (user != c->user && !c->is_operator)) {
      fail("unauthorized",
           c->user.empty() ? "a feed needs a token (op \"auth\")"
                           : "only an operator may read another user's feed",
           rid);
      return;
    }
    uint32_t k = 0;
    if (auto i = j.find("k"); i != j.end()) {
      if (!i->is_number_unsigned() || i->get<uint64_t>() > 100) {
        fail("invalid_request", "\"k\" must be an integer from 0 to 100", rid);
        return;
      }
      k = i->get<uint32_t>();
    }
    caf::actor requester;
    bool attached = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      requester = requester_;
      attached = !workers_.empty();
    }
    if (!attached || !requester) {
      fail("unavailable", "no websocket-broadcaster instance runs on this node now", rid);
      return;
    }
    ++counters_.feeds;
    caf::anon_send(requester, feed_atom::value, c->id, rid, user, k);
  } else if (op == "read") {
    auto id = str("article");
    if (id.empty() || id.size() > 128) {
      fail("invalid_request", "\"article\" must be an article id", rid);
      return;
    }
    caf::actor hub;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      hub = hub_;
    }
    if (hub)
      caf::anon_send(hub, read_atom::value, id, false);
    {
      // A read of an article the user's feed showed counts, once, for the
      // variant that ranked it.
      std::lock_guard<std::mutex> guard{mtx_};
      auto s = std::find_if(c->shown.begin(), c->shown.end(),
                            [&](const auto& x) { return x.first == id; });
      if (s != c->shown.end()) {
        if (auto v = variants_.find(s->second); v != variants_.end())
          ++v->second.reads;
        c->shown.erase(s);
      }
    }
    reply(c, dump(with_id({{"type", "read"}, {"article", id}}, rid)));
  } else if (op == "trending") {
    uint32_t k = 10;
    if (auto i = j.find("k"); i != j.end()) {
      if (!i->is_number_unsigned() || i->get<uint64_t>() < 1 || i->get<uint64_t>() > 100) {
        fail("invalid_request", "\"k\" must be an integer from 1 to 100", rid);
        return;
      }
      k = i->get<uint32_t>();
    }
    auto snap = trending();
    feed f;
    f.source = "trending";
    f.candidates = snap->candidates;
    f.items.assign(snap->items.begin(),
                   snap->items.begin() + std::min<size_t>(k, snap->items.size()));
    auto j = nlohmann::json::parse(feed_json(f, rid));
    j["type"] = "trending";
    j.erase("user");
    j.erase("degraded");
    j.erase("default_preferences");
    reply(c, dump(j));
  } else if (op == "recent") {
    // The latest pushes of a channel this client may subscribe to, oldest
    // first, as they were pushed: what a page shows on load.
    auto ch = str("channel");
    uint32_t k = recent_kept;
    if (auto i = j.find("k"); i != j.end()) {
      if (!i->is_number_unsigned() || i->get<uint64_t>() < 1
          || i->get<uint64_t>() > recent_kept) {
        fail("invalid_request",
             "\"k\" must be an integer from 1 to " + std::to_string(recent_kept), rid);
        return;
      }
      k = i->get<uint32_t>();
    }
    std::string wanted;
    if (!channel_for(*c, ch, false, wanted, fail, rid))
      return;
    bool alerts = ch == "alerts";
    std::vector<std::shared_ptr<const std::string>> picked;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto& q = alerts ? recent_alerts_ : recent_breaking_;
      for (auto i = q.rbegin(); i != q.rend() && picked.size() < k; ++i)
        if (std::find(i->channels.begin(), i->channels.end(), wanted) != i->channels.end())
          picked.push_back(i->msg);
    }
    auto items = json::array();
    for (auto i = picked.rbegin(); i != picked.rend(); ++i)
      items.push_back(json::parse(**i, nullptr, false));
    reply(c, dump(with_id({{"type", "recent"}, {"channel", ch}, {"items", std::move(items)}},
                          rid)));
  } else {
    fail("unknown_op",
         "unknown op '" + op
           + "' (known: auth, subscribe, unsubscribe, feed, trending, recent, read, command, "
             "ping)",
         rid);
  }
}

} // namespace troupe::ws
