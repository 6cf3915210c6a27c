#include "actors/news/news_hub.hpp"

#include <deque>
#include <map>
#include <unordered_set>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"

using namespace std::chrono_literals;

namespace troupe::news {

namespace {

/// Internal: look up a peer's hub again, `(lookup_atom, node, peer_agent)`.
using lookup_atom = caf::atom_constant<caf::atom("hublookup")>;

nlohmann::json article_object(const article& a) {
  return {{"id", a.id},     {"headline", a.headline},         {"category", a.category},
          {"bias", a.bias}, {"published_at", a.published_ms}, {"breaking", a.breaking}};
}

struct hub_state {
  hub_settings cfg;
  /// Peer node -> its hub.
  std::map<std::string, caf::actor> peers;
  /// Peer node -> its agent, while the node agent counts it as up.
  std::map<std::string, caf::actor> up;
  /// Alert ids pushed lately (at most `max_alert_ids`), oldest first.
  std::deque<std::string> alert_order;
  std::unordered_set<std::string> alert_ids;
  static constexpr size_t max_alert_ids = 20000;

  void log(const std::string& line) {
    if (cfg.log)
      cfg.log(line);
  }

  template <class... Ts>
  void relay(caf::event_based_actor* self, const Ts&... xs) {
    for (auto& kv : peers)
      self->send(kv.second, xs..., true);
  }

  bool first_alert(const std::string& id) {
    if (!alert_ids.insert(id).second)
      return false;
    alert_order.push_back(id);
    if (alert_order.size() > max_alert_ids) {
      alert_ids.erase(alert_order.front());
      alert_order.pop_front();
    }
    return true;
  }
};

caf::behavior hub_impl(caf::stateful_actor<hub_state>* self, hub_settings cfg) {
  self->state.cfg = std::move(cfg);
  if (self->state.cfg.agent)
    self->send(self->state.cfg.agent, subscribe_atom::value, caf::actor{self});
  return {
    [self](article_atom, article& a, bool relayed) {
      auto& st = self->state;
      if (!st.cfg.store->add(a, unix_ms()))
        return; // known already (or too old): pushed and relayed before
      if (a.breaking && st.cfg.publish)
        st.cfg.publish({"breaking:" + a.category, "breaking:*"},
                       std::make_shared<const std::string>(breaking_json(a)));
      if (!relayed)
        st.relay(self, article_atom::value, a);
    },
    [self](alert_push_atom, std::string& id, std::string& user, std::string& json,
           bool relayed) {
      auto& st = self->state;
      if (!st.first_alert(id))
        return;
      if (st.cfg.publish) {
        auto alert = nlohmann::json::parse(json, nullptr, false);
        if (!alert.is_discarded()) {
          nlohmann::json msg{{"type", "alert"}, {"alert", alert}};
          st.cfg.publish({"alerts", "alerts:" + user},
                         std::make_shared<const std::string>(msg.dump()));
        }
      }
      if (!relayed)
        st.relay(self, alert_push_atom::value, id, user, json);
    },
    [self](console_atom, std::string& node, std::string& json, bool relayed) {
      auto& st = self->state;
      // A snapshot of this node comes from its own console only; a peer's
      // only from that peer's hub.
      auto src = self->current_sender();
      bool local = src && src->node() == self->system().node();
      if (relayed == local || json.size() > 1024 * 1024)
        return;
      if (relayed) {
        auto i = st.peers.find(node);
        if (i == st.peers.end() || i->second.node() != src->node())
          return;
      } else if (node != st.cfg.node) {
        return;
      }
      if (st.cfg.console)
        st.cfg.console(node, json);
      if (!relayed)
        st.relay(self, console_atom::value, node, json);
    },
    [self](read_atom, std::string& id, bool relayed) {
      self->state.cfg.store->record_read(id);
      if (!relayed)
        self->state.relay(self, read_atom::value, id);
    },
    [self](window_atom) -> std::vector<article> {
      auto snap = self->state.cfg.store->snapshot();
      return {snap->begin(), snap->end()};
    },
    [self](member_up_atom, std::string& node, caf::actor& peer_agent) {
      self->state.up[node] = peer_agent;
      self->send(self, lookup_atom::value, node, peer_agent);
    },
    [self](lookup_atom, std::string& node, caf::actor& peer_agent) {
      auto i = self->state.up.find(node);
      if (i == self->state.up.end() || i->second != peer_agent)
        return; // that peer went down (or came back with another agent)
      self->request(peer_agent, 5s, group_atom::value, std::string{hub_service})
        .then(
          [self, node, peer_agent](caf::actor& hub) {
            if (!hub) {
              // That node has not started its hub yet: ask again soon.
              self->delayed_send(self, 200ms, lookup_atom::value, node, peer_agent);
              return;
            }
            self->state.peers[node] = hub;
            self->state.log("news hub: relaying to " + node);
            // Fill the window with what that node has seen (no pushes: these
            // are not news any more).
            self->request(hub, 10s, window_atom::value)
              .then(
                [self](std::vector<article>& xs) {
                  auto now = unix_ms();
                  for (auto& a : xs)
                    self->state.cfg.store->add(a, now);
                },
                [](caf::error&) {});
          },
          [self, node, peer_agent](caf::error& err) {
            // Not trusted yet on that side (it authenticates us a moment
            // later), or a lost message: ask again while it counts as up.
            self->state.log("news hub: no hub from " + node + " yet (" + render(err) + ")");
            self->delayed_send(self, 500ms, lookup_atom::value, node, peer_agent);
          });
    },
    [self](member_down_atom, std::string& node, std::string&) {
      self->state.peers.erase(node);
      self->state.up.erase(node);
    },
    // A drained node still relays: the hub serves every member.
    [](drain_atom, std::string&, bool) {},
    [](scale_atom, std::string&, uint32_t) {},
  };
}

} // namespace

std::string breaking_json(const article& a) {
  nlohmann::json msg{{"type", "breaking"}, {"article", article_object(a)}};
  return msg.dump();
}

caf::actor spawn_news_hub(caf::actor_system& sys, hub_settings cfg) {
  return sys.spawn(hub_impl, std::move(cfg));
}

} // namespace troupe::news
