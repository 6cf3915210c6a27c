#include "topology/topology.hpp"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"

namespace troupe::topology {

const node_spec* topology::node(const std::string& name) const {
  for (auto& n : nodes)
    if (n.name == name)
      return &n;
  return nullptr;
}

const group_decl* topology::group(const std::string& name) const {
  for (auto& g : groups)
    if (g.name == name)
      return &g;
  return nullptr;
}

std::string setting(const group_decl& decl, const std::string& key) {
  auto i = decl.settings.find(key);
  return i == decl.settings.end() ? std::string{} : i->second;
}

double number(const group_decl& decl, const std::string& key) {
  return std::strtod(setting(decl, key).c_str(), nullptr);
}

caf::timespan duration(const group_decl& decl, const std::string& key) {
  auto d = parse_duration(setting(decl, key));
  return d ? *d : caf::timespan{0};
}

namespace {

// The parser reports the first problem it meets. Inside this file a problem
// travels as a `failure` exception, caught in parse(): it never leaves it.
struct failure {
  caf::error err;
};

const char* type_name(const toml::node& x) {
  switch (x.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date or time";
    default: return "nothing";
  }
}

int line_of(const toml::node& x) {
  return static_cast<int>(x.source().begin.line);
}

bool is_name(const std::string& x) {
  static const std::regex pattern{R"(^[a-z0-9][a-z0-9_-]{0,62}$)"};
  return std::regex_match(x, pattern);
}

/// Reads one TOML table, remembering its path ("group[2]") for messages.
class reader {
public:
  reader(const std::string& source, const toml::table& tbl, std::string path)
    : source_(source), tbl_(tbl), path_(std::move(path)) {
    // nop
  }

  [[noreturn]] void fail(int line, const std::string& key, const std::string& problem) const {
    auto where = source_ + ":" + std::to_string(line) + ": ";
    auto what = path_.empty() ? key : key.empty() ? path_ : path_ + "." + key;
    throw failure{caf::make_error(ec::invalid_topology, where + what + ": " + problem)};
  }

  int line() const {
    return line_of(tbl_);
  }

  /// Fails on the first key not in `known`.
  void only(std::initializer_list<const char*> known) const {
    std::set<std::string> k(known.begin(), known.end());
    for (auto&& [key, value] : tbl_) {
      if (k.count(std::string{key.str()}) == 0) {
        std::string list;
        for (auto& x : k)
          list += (list.empty() ? "" : ", ") + x;
        fail(static_cast<int>(key.source().begin.line), std::string{key.str()},
             "unknown key (known: " + list + ")");
      }
    }
  }

  const toml::node* find(const char* key) const {
    return tbl_.get(key);
  }

  std::string str(const char* key, std::optional<std::string> fallback = std::nullopt) const {
    auto x = find(key);
    if (!x) {
      if (!fallback)
        fail(line(), key, "missing (required)");
      return *fallback;
    }
    if (!x->is_string())
      fail(line_of(*x), key, std::string{"expected a string, got "} + type_name(*x));
    return x->as_string()->get();
  }

  int64_t integer(const char* key, std::optional<int64_t> fallback, int64_t min,
                  int64_t max) const {
    auto x = find(key);
    if (!x) {
      if (!fallback)
        fail(line(), key, "missing (required)");
      return *fallback;
    }
    if (!x->is_integer())
      fail(line_of(*x), key, std::string{"expected an integer, got "} + type_name(*x));
    auto v = x->as_integer()->get();
    if (v < min || v > max)
      fail(line_of(*x), key,
           std::to_string(v) + " is out of range [" + std::to_string(min) + ", "
             + std::to_string(max) + "]");
    return v;
  }

  bool boolean(const char* key) const {
    auto x = find(key);
    if (!x || !x->is_boolean())
      fail(x ? line_of(*x) : line(), key,
           std::string{"expected true or false, got "} + (x ? type_name(*x) : "nothing"));
    return x->as_boolean()->get();
  }

  double number(const char* key, double fallback) const {
    auto x = find(key);
    if (!x)
      return fallback;
    if (x->is_integer())
      return static_cast<double>(x->as_integer()->get());
    if (!x->is_floating_point())
      fail(line_of(*x), key, std::string{"expected a number, got "} + type_name(*x));
    return x->as_floating_point()->get();
  }

  caf::timespan duration(const char* key, caf::timespan fallback) const {
    auto x = find(key);
    if (!x)
      return fallback;
    if (!x->is_string())
      fail(line_of(*x), key,
           std::string{"expected a duration string such as \"500ms\", got "} + type_name(*x));
    auto d = parse_duration(x->as_string()->get());
    if (!d)
      fail(line_of(*x), key, render(d.error()).substr(sizeof("invalid_argument: ") - 1));
    return *d;
  }

  /// A log level's name (`error` ... `trace`).
  troupe::log_level log_level(const char* key) const {
    auto text = str(key);
    auto x = parse_log_level(text);
    if (!x)
      fail(line_of(*find(key)), key, render(x.error()).substr(sizeof("invalid_argument: ") - 1));
    return *x;
  }

  std::vector<std::string> strings(const char* key) const {
    std::vector<std::string> result;
    auto x = find(key);
    if (!x)
      return result;
    if (!x->is_array())
      fail(line_of(*x), key, std::string{"expected an array of strings, got "} + type_name(*x));
    for (auto& item : *x->as_array()) {
      if (!item.is_string())
        fail(line_of(item), key,
             std::string{"expected an array of strings, found "} + type_name(item));
      result.push_back(item.as_string()->get());
    }
    return result;
  }

  /// The sub-table `key`, if present; fails if it is not a table.
  const toml::table* table(const char* key) const {
    auto x = find(key);
    if (!x)
      return nullptr;
    if (!x->is_table())
      fail(line_of(*x), key, std::string{"expected a table, got "} + type_name(*x));
    return x->as_table();
  }

  /// The required key `name`, which must be a name (lower-case letters,
  /// digits, '-' and '_') that no entry of `earlier` (each with `name` and
  /// `line`) has already: `kind` says what is declared twice.
  template <class Earlier>
  std::string unique_name(const char* kind, const Earlier& earlier) const {
    auto result = str("name");
    auto line = line_of(*find("name"));
    if (!is_name(result))
      fail(line, "name",
           "'" + result + "' is not a name (lower-case letters, digits, '-' and '_')");
    for (auto& other : earlier)
      if (other.name == result)
        fail(line, "name",
             std::string{kind} + " '" + result + "' is declared twice (first at line "
               + std::to_string(other.line) + ")");
    return result;
  }

  const std::string& path() const {
    return path_;
  }

  const toml::table& tbl() const {
    return tbl_;
  }

private:
  const std::string& source_;
  const toml::table& tbl_;
  std::string path_;
};

std::string read_file(const std::string& path, const std::string& what, const reader& r,
                      int line, const char* key) {
  std::ifstream in{path};
  if (!in)
    r.fail(line, key, "cannot read " + what + " '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  auto text = ss.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  return text;
}

cluster_settings read_cluster(const std::string& source, const toml::table& root) {
  auto c = root.get("cluster");
  if (!c)
    throw failure{caf::make_error(ec::invalid_topology,
                                  source + ":1: cluster: missing table [cluster]")};
  if (!c->is_table())
    throw failure{caf::make_error(ec::invalid_topology, source + ":" + std::to_string(line_of(*c))
                                                          + ": cluster: expected a table")};
  reader r{source, *c->as_table(), "cluster"};
  r.only({"name", "secret", "secret_file", "heartbeat_interval", "failure_timeout",
          "takeover_delay", "kafka", "kafka_fetch_wait",
          "redis", "redis_password_file", "redis_nice", "tls", "log_level", "log_format", "state_dir",
          "client_token_key_file", "trace_sample"});
  cluster_settings x;
  x.name = r.unique_name("cluster", std::vector<node_spec>{});
  auto has_secret = r.find("secret") != nullptr;
  auto has_file = r.find("secret_file") != nullptr;
  if (has_secret == has_file)
    r.fail(r.line(), "secret", "give exactly one of 'secret' and 'secret_file'");
  if (has_secret)
    x.secret = r.str("secret");
  else
    x.secret = read_file(r.str("secret_file"), "secret file", r, line_of(*r.find("secret_file")),
                         "secret_file");
  if (x.secret.size() < 8)
    r.fail(line_of(*r.find(has_secret ? "secret" : "secret_file")),
           has_secret ? "secret" : "secret_file", "the secret must have at least 8 characters");
  x.heartbeat_interval = r.duration("heartbeat_interval", x.heartbeat_interval);
  x.failure_timeout = r.duration("failure_timeout", x.failure_timeout);
  if (x.heartbeat_interval <= caf::timespan{0})
    r.fail(line_of(*r.find("heartbeat_interval")), "heartbeat_interval", "must be positive");
  if (x.failure_timeout <= x.heartbeat_interval)
    r.fail(r.find("failure_timeout") ? line_of(*r.find("failure_timeout")) : r.line(),
           "failure_timeout", "must be longer than heartbeat_interval ("
                                + to_duration_string(x.heartbeat_interval) + ")");
  x.takeover_delay = r.duration("takeover_delay", x.failure_timeout);
  if (x.takeover_delay < x.heartbeat_interval)
    r.fail(r.find("takeover_delay") ? line_of(*r.find("takeover_delay")) : r.line(),
           "takeover_delay", "must be at least heartbeat_interval ("
                               + to_duration_string(x.heartbeat_interval) + ")");
  x.kafka = r.str("kafka", std::string{"embedded"});
  x.kafka_fetch_wait = r.duration("kafka_fetch_wait", x.kafka_fetch_wait);
  if (x.kafka_fetch_wait < std::chrono::milliseconds(1)
      || x.kafka_fetch_wait > std::chrono::seconds(5))
    r.fail(line_of(*r.find("kafka_fetch_wait")), "kafka_fetch_wait", "must be from 1ms to 5s");
  x.trace_sample = r.number("trace_sample", x.trace_sample);
  if (x.trace_sample < 0 || x.trace_sample > 1)
    r.fail(line_of(*r.find("trace_sample")), "trace_sample", "must be from 0 to 1");
  x.redis = r.str("redis", std::string{"embedded"});
  if (x.redis != "embedded" && x.redis.rfind("redis://", 0) != 0)
    r.fail(line_of(*r.find("redis")), "redis", "expected \"embedded\" or redis://host:port");
  if (auto nice = r.find("redis_nice")) {
    if (x.redis != "embedded")
      r.fail(line_of(*nice), "redis_nice",
             "only for the embedded Redis (troupe up starts it); give a production Redis's "
             "priority where it runs");
    x.redis_nice = static_cast<int>(r.integer("redis_nice", std::nullopt, -20, 19));
  }
  if (r.find("redis_password_file")) {
    auto line = line_of(*r.find("redis_password_file"));
    if (x.redis == "embedded")
      r.fail(line, "redis_password_file",
             "the embedded Redis generates its own password; give it for redis://host:port");
    auto path = r.str("redis_password_file");
    if (!path.empty() && path.front() != '/') {
      auto slash = source.rfind('/');
      path = (slash == std::string::npos ? std::string{} : source.substr(0, slash + 1)) + path;
    }
    x.redis_password = read_file(path, "Redis password file", r, line, "redis_password_file");
    if (x.redis_password.empty())
      r.fail(line, "redis_password_file", "the password file '" + path + "' is empty");
  }
  // Relative to the topology file's folder, like every path a file names
  // for the cluster as a whole.
  x.state_dir = r.str("state_dir", std::string{".troupe-state"});
  if (x.state_dir.empty())
    r.fail(line_of(*r.find("state_dir")), "state_dir", "must not be empty");
  if (x.state_dir.front() != '/') {
    auto slash = source.rfind('/');
    x.state_dir = (slash == std::string::npos ? std::string{} : source.substr(0, slash + 1))
                  + x.state_dir;
  }
  x.client_token_key_file = x.state_dir + "/client-token.key";
  if (r.find("client_token_key_file")) {
    auto line = line_of(*r.find("client_token_key_file"));
    auto path = r.str("client_token_key_file");
    if (path.empty())
      r.fail(line, "client_token_key_file", "must not be empty");
    if (path.front() != '/') {
      auto slash = source.rfind('/');
      path = (slash == std::string::npos ? std::string{} : source.substr(0, slash + 1)) + path;
    }
    auto key = read_file(path, "client token key file", r, line, "client_token_key_file");
    if (key.size() < 32)
      r.fail(line, "client_token_key_file",
             "the key in '" + path + "' is shorter than 32 bytes");
    x.client_token_key_file = path;
    x.client_token_key_generated = false;
  }
  if (r.find("log_level"))
    x.log = r.log_level("log_level");
  if (r.find("log_format")) {
    auto f = parse_log_format(r.str("log_format"));
    if (!f)
      r.fail(line_of(*r.find("log_format")), "log_format",
             render(f.error()).substr(sizeof("invalid_argument: ") - 1));
    x.format = *f;
  }
  if (auto t = r.table("tls")) {
    reader tr{source, *t, "cluster.tls"};
    tr.only({"certificate", "key", "ca_file", "operator_certificate", "operator_key", "clients"});
    x.tls = tls_settings{tr.str("certificate"), tr.str("key"), tr.str("ca_file"), {}, {}};
    if (tr.find("clients"))
      x.tls->clients = tr.boolean("clients");
    // Refuse a file that cannot be read now, not at the first connection
    // (per-node paths are checked once the nodes are known).
    if (!x.tls->per_node()) {
      read_file(x.tls->certificate, "certificate", tr, line_of(*tr.find("certificate")),
                "certificate");
      read_file(x.tls->key, "key", tr, line_of(*tr.find("key")), "key");
    }
    read_file(x.tls->ca_file, "CA file", tr, line_of(*tr.find("ca_file")), "ca_file");
    auto op_cert = tr.find("operator_certificate");
    auto op_key = tr.find("operator_key");
    if ((op_cert == nullptr) != (op_key == nullptr))
      tr.fail(line_of(op_cert ? *op_cert : *op_key),
              op_cert ? "operator_certificate" : "operator_key",
              "operator_certificate and operator_key go together");
    if (op_cert) {
      x.tls->operator_certificate = tr.str("operator_certificate");
      x.tls->operator_key = tr.str("operator_key");
      read_file(x.tls->operator_certificate, "certificate", tr, line_of(*op_cert),
                "operator_certificate");
      read_file(x.tls->operator_key, "key", tr, line_of(*op_key), "operator_key");
    }
  }
  return x;
}

/// Each node's own certificate and key, when `[cluster.tls]` names them
/// per node (`{node}`): readable for every node of the file.
void check_node_certificates(const std::string& source, const toml::table& root,
                             const cluster_settings& c, const std::vector<node_spec>& nodes) {
  if (!c.tls || !c.tls->per_node())
    return;
  auto t = root["cluster"]["tls"].as_table();
  if (t == nullptr)
    return;
  reader tr{source, *t, "cluster.tls"};
  for (auto& n : nodes) {
    auto mine = c.tls->for_node(n.name);
    read_file(mine.certificate, "certificate of node " + n.name, tr,
              line_of(*tr.find("certificate")), "certificate");
    read_file(mine.key, "key of node " + n.name, tr, line_of(*tr.find("key")), "key");
  }
}

std::vector<node_spec> read_nodes(const std::string& source, const toml::table& root) {
  std::vector<node_spec> result;
  auto arr = root.get("node");
  if (!arr || !arr->is_array_of_tables())
    throw failure{caf::make_error(
      ec::invalid_topology,
      source + ":" + std::to_string(arr ? line_of(*arr) : 1)
        + ": node: expected at least one [[node]] table")};
  size_t i = 0;
  std::map<std::pair<std::string, int64_t>, std::string> ports;
  for (auto& item : *arr->as_array()) {
    reader r{source, *item.as_table(), "node[" + std::to_string(i++) + "]"};
    r.only({"name", "host", "cluster_port", "http_port", "admin_host", "admin_port", "threads",
            "log_level"});
    node_spec n;
    n.line = r.line();
    n.name = r.unique_name("node", result);
    n.host = r.str("host", std::string{"127.0.0.1"});
    if (n.host.empty())
      r.fail(line_of(*r.find("host")), "host", "must not be empty");
    for (auto key : {"cluster_port", "http_port"}) {
      auto port = r.integer(key, std::nullopt, 1, 65535);
      auto where = r.path() + "." + key;
      auto [it, fresh] = ports.emplace(std::make_pair(n.host, port), where);
      if (!fresh)
        r.fail(line_of(*r.find(key)), key,
               "port " + std::to_string(port) + " on " + n.host + " is already used by "
                 + it->second);
      (std::string{key} == "cluster_port" ? n.cluster_port : n.http_port)
        = static_cast<uint16_t>(port);
    }
    if (r.find("admin_port")) {
      n.admin_host = r.str("admin_host", std::string{"127.0.0.1"});
      if (n.admin_host.empty())
        r.fail(line_of(*r.find("admin_host")), "admin_host", "must not be empty");
      auto port = r.integer("admin_port", std::nullopt, 1, 65535);
      auto [it, fresh] = ports.emplace(std::make_pair(n.admin_host, port), r.path() + ".admin_port");
      if (!fresh)
        r.fail(line_of(*r.find("admin_port")), "admin_port",
               "port " + std::to_string(port) + " on " + n.admin_host + " is already used by "
                 + it->second);
      n.admin_port = static_cast<uint16_t>(port);
    } else if (r.find("admin_host")) {
      r.fail(line_of(*r.find("admin_host")), "admin_host", "give admin_port with it");
    }
    n.threads = static_cast<size_t>(r.integer("threads", int64_t{0}, 0, 256));
    if (r.find("log_level"))
      n.log = r.log_level("log_level");
    result.push_back(std::move(n));
  }
  return result;
}

strategy parse_strategy(const reader& r, const std::string& x) {
  if (x == "one_for_one")
    return strategy::one_for_one;
  if (x == "one_for_all")
    return strategy::one_for_all;
  if (x == "rest_for_one")
    return strategy::rest_for_one;
  r.fail(line_of(*r.find("strategy")), "strategy",
         "'" + x + "' is not one of one_for_one, one_for_all, rest_for_one");
}

/// The text of a setting's value if its TOML type fits `spec`, else the problem.
std::optional<std::string> setting_text(const setting_spec& spec, const toml::node& value,
                                        std::string& problem) {
  auto wrong = [&] {
    problem = std::string{"expected "} + to_string(spec.type) + ", got " + type_name(value);
    return std::nullopt;
  };
  switch (spec.type) {
    case setting_type::string:
    case setting_type::duration:
      if (!value.is_string())
        return wrong();
      return value.as_string()->get();
    case setting_type::integer:
      if (!value.is_integer())
        return wrong();
      return std::to_string(value.as_integer()->get());
    case setting_type::number:
      if (value.is_integer())
        return std::to_string(value.as_integer()->get());
      if (!value.is_floating_point())
        return wrong();
      return std::to_string(value.as_floating_point()->get());
    case setting_type::boolean:
      if (!value.is_boolean())
        return wrong();
      return std::string{value.as_boolean()->get() ? "true" : "false"};
  }
  return wrong();
}

std::vector<group_decl> read_groups(const std::string& source, const toml::table& root,
                                    const std::vector<node_spec>& nodes,
                                    const domain_schemas& domains) {
  std::vector<group_decl> result;
  auto arr = root.get("group");
  if (!arr)
    return result;
  if (!arr->is_array_of_tables())
    throw failure{caf::make_error(ec::invalid_topology,
                                  source + ":" + std::to_string(line_of(*arr))
                                    + ": group: expected [[group]] tables")};
  size_t i = 0;
  for (auto& item : *arr->as_array()) {
    reader r{source, *item.as_table(), "group[" + std::to_string(i++) + "]"};
    r.only({"name", "domain", "instances", "nodes", "strategy", "intensity", "period", "backoff",
            "routing", "key", "fallback", "restart_delay", "settings"});
    group_decl g;
    g.line = r.line();
    g.name = r.unique_name("group", result);
    g.domain = r.str("domain");
    const domain_schema* dom = nullptr;
    std::string known;
    for (auto& d : domains) {
      known += (known.empty() ? "" : ", ") + d.name;
      if (d.name == g.domain)
        dom = &d;
    }
    if (!dom)
      r.fail(line_of(*r.find("domain")), "domain",
             "'" + g.domain + "' is not a domain (known: " + known + ")");
    g.instances = static_cast<uint32_t>(r.integer("instances", 1, 1, 1024));
    g.nodes = r.strings("nodes");
    if (r.find("nodes") && g.nodes.empty())
      r.fail(line_of(*r.find("nodes")), "nodes",
             "no node may host this group (the list is empty)");
    std::set<std::string> seen;
    for (auto& n : g.nodes) {
      bool exists = false;
      for (auto& decl : nodes)
        exists |= decl.name == n;
      if (!exists)
        r.fail(line_of(*r.find("nodes")), "nodes", "unknown node '" + n + "'");
      if (!seen.insert(n).second)
        r.fail(line_of(*r.find("nodes")), "nodes", "node '" + n + "' is listed twice");
    }
    if (g.nodes.empty())
      for (auto& decl : nodes)
        g.nodes.push_back(decl.name);
    if (r.find("strategy"))
      g.strat = parse_strategy(r, r.str("strategy"));
    g.intensity = static_cast<int>(r.integer("intensity", 5, 0, 1000000));
    g.period = r.duration("period", g.period);
    if (g.period <= caf::timespan{0})
      r.fail(line_of(*r.find("period")), "period", "must be positive");
    if (auto b = r.table("backoff")) {
      reader br{source, *b, r.path() + ".backoff"};
      br.only({"min", "max", "jitter", "reset_after"});
      backoff_spec bs;
      bs.min = br.duration("min", bs.min);
      bs.max = br.duration("max", bs.max);
      bs.jitter = br.number("jitter", bs.jitter);
      bs.reset_after = br.duration("reset_after", bs.reset_after);
      if (bs.min <= caf::timespan{0})
        br.fail(br.line(), "min", "must be positive");
      if (bs.max < bs.min)
        br.fail(br.line(), "max", "is below min");
      if (!(bs.jitter >= 0.0 && bs.jitter < 1.0))
        br.fail(br.line(), "jitter", "must be in [0, 1)");
      g.backoff = bs;
    }
    g.routing = r.str("routing", std::string{"round_robin"});
    if (g.routing != "round_robin" && g.routing != "key_hash")
      r.fail(line_of(*r.find("routing")), "routing",
             "'" + g.routing + "' is not one of round_robin, key_hash");
    g.key = r.str("key", std::string{});
    if (g.routing == "key_hash" && g.key.empty())
      r.fail(r.line(), "key", "key_hash routing needs the key field to hash, e.g. key = \"user\"");
    if (g.routing != "key_hash" && !g.key.empty())
      r.fail(line_of(*r.find("key")), "key", "only key_hash routing uses a key");
    g.fallback = r.str("fallback", std::string{"none"});
    auto& fb = dom->fallbacks;
    if (g.fallback != "none" && std::find(fb.begin(), fb.end(), g.fallback) == fb.end()) {
      std::string list = "none";
      for (auto& f : fb)
        list += ", " + f;
      r.fail(line_of(*r.find("fallback")), "fallback",
             "'" + g.fallback + "' is not a fallback of " + g.domain + " (known: " + list + ")");
    }
    g.restart_delay = r.duration("restart_delay", g.restart_delay);
    g.settings = dom->defaults();
    if (auto s = r.table("settings")) {
      reader sr{source, *s, r.path() + ".settings"};
      std::map<std::string, int> lines;
      for (auto&& [key, value] : *s) {
        auto k = std::string{key.str()};
        auto line = static_cast<int>(key.source().begin.line);
        lines[k] = line;
        auto spec = dom->find(k);
        if (!spec) {
          auto problem = dom->validate({{k, ""}});
          sr.fail(line, k, problem ? problem->problem : "unknown setting");
        }
        std::string problem;
        auto text = setting_text(*spec, value, problem);
        if (!text)
          sr.fail(line_of(value), k, problem);
        if (auto bad = check(*spec, *text))
          sr.fail(line_of(value), k, *bad);
        g.settings[k] = *text;
      }
      if (auto problem = dom->validate(g.settings)) {
        auto i = lines.find(problem->key);
        sr.fail(i != lines.end() ? i->second : sr.line(), problem->key, problem->problem);
      }
    } else if (auto problem = dom->validate(g.settings)) {
      r.fail(r.line(), "settings." + problem->key, problem->problem);
    }
    result.push_back(std::move(g));
  }
  return result;
}

} // namespace

bool tls_settings::per_node() const {
  return certificate.find("{node}") != std::string::npos
         || key.find("{node}") != std::string::npos;
}

tls_settings tls_settings::for_node(const std::string& name) const {
  auto replace = [&](std::string s) {
    for (auto i = s.find("{node}"); i != std::string::npos; i = s.find("{node}", i + name.size()))
      s.replace(i, 6, name);
    return s;
  };
  auto x = *this;
  x.certificate = replace(certificate);
  x.key = replace(key);
  return x;
}

tls_settings tls_settings::for_operator() const {
  auto x = *this;
  if (!operator_certificate.empty()) {
    x.certificate = operator_certificate;
    x.key = operator_key;
  }
  return x;
}

caf::expected<topology> parse(const std::string& text, const std::string& source,
                              const domain_schemas& domains) {
  try {
    toml::table root;
    try {
      root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
      return caf::make_error(ec::invalid_topology,
                             source + ":" + std::to_string(e.source().begin.line)
                               + ": syntax: " + std::string{e.description()});
    }
    reader top{source, root, ""};
    top.only({"cluster", "node", "group"});
    topology result;
    result.source = source;
    result.cluster = read_cluster(source, root);
    result.nodes = read_nodes(source, root);
    check_node_certificates(source, root, result.cluster, result.nodes);
    result.groups = read_groups(source, root, result.nodes, domains);
    return result;
  } catch (failure& f) {
    return std::move(f.err);
  }
}

caf::expected<topology> load(const std::string& path, const domain_schemas& domains) {
  std::ifstream in{path};
  if (!in)
    return caf::make_error(ec::invalid_topology, path + ": cannot open the topology file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path, domains);
}

} // namespace troupe::topology
