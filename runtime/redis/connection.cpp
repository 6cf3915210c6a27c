#include "runtime/redis/connection.hpp"

#include <chrono>
#include <mutex>

#include <hiredis/hiredis.h>

#include "runtime/core/error.hpp"
#include "runtime/core/registry.hpp"

namespace troupe::redis {

namespace {

redisContext* ctx_of(void* p) {
  return static_cast<redisContext*>(p);
}

reply convert(const redisReply* r) {
  reply x;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      x.kind = reply::integer;
      x.number = r->integer;
      break;
    case REDIS_REPLY_STRING:
      x.kind = reply::string;
      x.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      x.kind = reply::status;
      x.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      x.kind = reply::error;
      x.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      x.kind = reply::array;
      for (size_t i = 0; i < r->elements; ++i)
        x.elements.push_back(convert(r->element[i]));
      break;
    default:
      x.kind = reply::nil;
  }
  return x;
}

timeval to_timeval(caf::timespan t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t).count();
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

} // namespace

caf::expected<std::pair<std::string, uint16_t>> parse_url(const std::string& url) {
  const std::string prefix = "redis://";
  if (url.rfind(prefix, 0) != 0)
    return caf::make_error(ec::invalid_argument, "not a redis:// URL: '" + url + "'");
  auto rest = url.substr(prefix.size());
  if (!rest.empty() && rest.back() == '/')
    rest.pop_back();
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return caf::make_error(ec::invalid_argument, "expected redis://host:port, got '" + url + "'");
  try {
    auto port = std::stoul(rest.substr(colon + 1));
    if (port == 0 || port > 65535)
      throw std::out_of_range{"port"};
    return std::make_pair(rest.substr(0, colon), static_cast<uint16_t>(port));
  } catch (const std::exception&) {
    return caf::make_error(ec::invalid_argument, "bad port in '" + url + "'");
  }
}

namespace {

std::mutex password_mtx;
std::string password;

std::string current_password() {
  std::lock_guard<std::mutex> guard{password_mtx};
  return password;
}

std::atomic<uint64_t>& errors_of(const std::string& client, const char* kind) {
  return registry::instance().counter(
    "troupe_redis_errors_total",
    "Redis failures by client and kind: connect, io (I/O error or timeout), reply (an error "
    "reply).",
    {{"client", client}, {"kind", kind}});
}

} // namespace

connection::connection(void* ctx, const std::string& client)
  : ctx_(ctx),
    commands_(&registry::instance().counter(
      "troupe_redis_commands_total", "Redis round trips by client (one per command or pipeline).",
      {{"client", client}})),
    io_errors_(&errors_of(client, "io")),
    reply_errors_(&errors_of(client, "reply")) {
}

connection::~connection() {
  redisFree(ctx_of(ctx_));
}

caf::expected<std::unique_ptr<connection>>
connection::make(const std::string& url, caf::timespan timeout, const std::string& client) {
  auto where = parse_url(url);
  if (!where)
    return where.error();
  auto tv = to_timeval(timeout);
  auto c = redisConnectWithTimeout(where->first.c_str(), where->second, tv);
  if (c == nullptr)
    return caf::make_error(ec::io_failure, "cannot allocate a Redis context");
  if (c->err) {
    errors_of(client, "connect").fetch_add(1, std::memory_order_relaxed);
    auto err = caf::make_error(ec::io_failure,
                               "cannot connect to " + url + ": " + std::string{c->errstr});
    redisFree(c);
    return err;
  }
  redisSetTimeout(c, tv);
  if (auto pw = current_password(); !pw.empty()) {
    auto r = static_cast<redisReply*>(redisCommand(c, "AUTH %b", pw.data(), pw.size()));
    std::string why;
    if (r == nullptr)
      why = c->errstr;
    else if (r->type == REDIS_REPLY_ERROR)
      why = std::string(r->str, r->len);
    if (r != nullptr)
      freeReplyObject(r);
    if (!why.empty()) {
      errors_of(client, "connect").fetch_add(1, std::memory_order_relaxed);
      redisFree(c);
      return caf::make_error(ec::io_failure, url + " refused the password: " + why);
    }
  }
  return std::unique_ptr<connection>{new connection(c, client)};
}

void connection::set_password(std::string pw) {
  std::lock_guard<std::mutex> guard{password_mtx};
  password = std::move(pw);
}

bool connection::alive() const {
  return ctx_of(ctx_)->err == 0;
}

void connection::set_timeout(caf::timespan timeout) {
  redisSetTimeout(ctx_of(ctx_), to_timeval(timeout));
}

caf::expected<std::vector<reply>>
connection::pipeline(const std::vector<std::vector<std::string>>& commands) {
  commands_->fetch_add(1, std::memory_order_relaxed);
  auto result = round_trip(commands);
  if (!result) {
    io_errors_->fetch_add(1, std::memory_order_relaxed);
    return result;
  }
  uint64_t bad = 0;
  for (auto& r : *result)
    if (r.kind == reply::error)
      ++bad;
  if (bad > 0)
    reply_errors_->fetch_add(bad, std::memory_order_relaxed);
  return result;
}

caf::expected<std::vector<reply>>
connection::round_trip(const std::vector<std::vector<std::string>>& commands) {
  auto c = ctx_of(ctx_);
  if (c->err)
    return caf::make_error(ec::io_failure, std::string{"connection lost: "} + c->errstr);
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (auto& cmd : commands) {
    argv.clear();
    lens.clear();
    for (auto& a : cmd) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())
        != REDIS_OK)
      return caf::make_error(ec::io_failure, std::string{"cannot queue: "} + c->errstr);
  }
  std::vector<reply> result;
  result.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr)
      return caf::make_error(ec::io_failure, std::string{"connection lost: "}
                                                     + (c->err ? c->errstr : "no reply"));
    auto r = static_cast<redisReply*>(raw);
    result.push_back(convert(r));
    freeReplyObject(r);
  }
  return result;
}

caf::expected<reply> connection::command(const std::vector<std::string>& args) {
  auto r = pipeline({args});
  if (!r)
    return r.error();
  return std::move(r->front());
}

} // namespace troupe::redis
