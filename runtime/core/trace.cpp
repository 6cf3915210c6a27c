#include "runtime/core/trace.hpp"

#include <chrono>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

namespace troupe::trace {

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1; // uppercase is invalid in version 00
}

bool parse_hex(std::string_view text, uint64_t& out) {
  out = 0;
  for (auto c : text) {
    auto d = hex_digit(c);
    if (d < 0)
      return false;
    out = (out << 4) | static_cast<uint64_t>(d);
  }
  return true;
}

void put_hex(std::string& out, uint64_t x, int digits) {
  static constexpr char hex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i)
    out += hex[(x >> (4 * i)) & 0xf];
}

std::mt19937_64& generator() {
  thread_local std::mt19937_64 gen{[] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd()
           ^ std::hash<std::thread::id>{}(std::this_thread::get_id());
  }()};
  return gen;
}

} // namespace

std::optional<context> parse_traceparent(std::string_view text) {
  // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55.
  if (text.size() < 55 || text[2] != '-' || text[35] != '-' || text[52] != '-')
    return std::nullopt;
  uint64_t version = 0;
  if (!parse_hex(text.substr(0, 2), version) || version == 0xff)
    return std::nullopt;
  if (version == 0 && text.size() != 55)
    return std::nullopt;
  if (version != 0 && text.size() > 55 && text[55] != '-')
    return std::nullopt;
  context x;
  uint64_t flags = 0;
  if (!parse_hex(text.substr(3, 16), x.trace_hi) || !parse_hex(text.substr(19, 16), x.trace_lo)
      || !parse_hex(text.substr(36, 16), x.span) || !parse_hex(text.substr(53, 2), flags))
    return std::nullopt;
  if (!x.valid() || x.span == 0)
    return std::nullopt;
  x.flags = static_cast<uint8_t>(flags);
  return x;
}

std::string traceparent(const context& x) {
  std::string out = "00-";
  out.reserve(55);
  put_hex(out, x.trace_hi, 16);
  put_hex(out, x.trace_lo, 16);
  out += '-';
  put_hex(out, x.span, 16);
  out += '-';
  put_hex(out, x.flags, 2);
  return out;
}

std::string trace_hex(uint64_t hi, uint64_t lo) {
  std::string out;
  out.reserve(32);
  put_hex(out, hi, 16);
  put_hex(out, lo, 16);
  return out;
}

std::string span_hex(uint64_t id) {
  std::string out;
  out.reserve(16);
  put_hex(out, id, 16);
  return out;
}

uint64_t new_span_id() {
  uint64_t x = 0;
  while (x == 0)
    x = generator()();
  return x;
}

context new_trace(double sample) {
  context x;
  while (!x.valid()) {
    x.trace_hi = generator()();
    x.trace_lo = generator()();
  }
  // Sampled by the trace id, so that every node that sees it agrees.
  auto cut = sample >= 1.0 ? UINT64_MAX
                           : static_cast<uint64_t>(sample * 18446744073709551615.0);
  x.flags = sample > 0 && x.trace_lo <= cut ? 1 : 0;
  return x;
}

int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

tracer::tracer(std::string node, size_t capacity, size_t export_capacity)
  : node_(std::move(node)), capacity_(capacity), export_capacity_(export_capacity) {
  ring_.reserve(std::min<size_t>(capacity_, 4096));
}

uint32_t tracer::place_of(const std::string& group, uint32_t instance) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (size_t i = 0; i < places_.size(); ++i)
    if (places_[i].group == group && places_[i].instance == instance)
      return static_cast<uint32_t>(i);
  places_.push_back({node_, group, instance});
  return static_cast<uint32_t>(places_.size() - 1);
}

place tracer::where(uint32_t id) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return id < places_.size() ? places_[id] : place{node_, "?", 0};
}

void tracer::record(std::vector<span> spans) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& s : spans) {
    if (s.flags & 1) {
      if (exports_.size() < export_capacity_)
        exports_.push_back(s);
      else
        dropped_.fetch_add(1, std::memory_order_relaxed);
    }
    if (ring_.size() < capacity_) {
      ring_.push_back(std::move(s));
    } else {
      ring_[next_] = std::move(s);
      next_ = (next_ + 1) % capacity_;
    }
  }
}

std::vector<span> tracer::find(const std::string& event) const {
  std::vector<span> out;
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& s : ring_)
    if (s.event == event)
      out.push_back(s);
  std::sort(out.begin(), out.end(),
            [](const span& a, const span& b) { return a.start_ns < b.start_ns; });
  return out;
}

std::vector<span> tracer::take_exports(size_t max) {
  std::vector<span> out;
  std::lock_guard<std::mutex> guard{mtx_};
  if (exports_.size() <= max) {
    out.swap(exports_);
  } else {
    out.assign(std::make_move_iterator(exports_.begin()),
               std::make_move_iterator(exports_.begin() + static_cast<ptrdiff_t>(max)));
    exports_.erase(exports_.begin(), exports_.begin() + static_cast<ptrdiff_t>(max));
  }
  return out;
}

nlohmann::json tracer::to_json(const span& s) const {
  auto p = where(s.where);
  return {{"trace_id", trace_hex(s.trace_hi, s.trace_lo)},
          {"span_id", span_hex(s.id)},
          {"parent_span_id", s.parent ? span_hex(s.parent) : std::string{}},
          {"name", s.name},
          {"transaction", s.event},
          {"node", p.node},
          {"group", p.group},
          {"instance", p.instance},
          {"start_ns", s.start_ns},
          {"end_ns", s.end_ns},
          {"duration_ms", static_cast<double>(s.end_ns - s.start_ns) / 1e6},
          {"outcome", s.error.empty() ? "ok" : "error"},
          {"error", s.error},
          {"sampled", (s.flags & 1) != 0}};
}

nlohmann::json tracer::to_otlp(const std::vector<span>& spans) const {
  auto str = [](const char* key, const std::string& v) {
    return nlohmann::json{{"key", key}, {"value", {{"stringValue", v}}}};
  };
  nlohmann::json out = nlohmann::json::array();
  for (auto& s : spans) {
    auto p = where(s.where);
    nlohmann::json x{{"traceId", trace_hex(s.trace_hi, s.trace_lo)},
                     {"spanId", span_hex(s.id)},
                     {"name", s.name},
                     {"kind", 1}, // SPAN_KIND_INTERNAL
                     {"startTimeUnixNano", std::to_string(s.start_ns)},
                     {"endTimeUnixNano", std::to_string(s.end_ns)},
                     {"attributes",
                      {str("troupe.node", p.node),
                       str("troupe.group", p.group),
                       {{"key", "troupe.instance"},
                        {"value", {{"intValue", std::to_string(p.instance)}}}},
                       str("troupe.transaction", s.event)}},
                     // STATUS_CODE_OK 1, STATUS_CODE_ERROR 2
                     {"status", s.error.empty()
                                  ? nlohmann::json{{"code", 1}}
                                  : nlohmann::json{{"code", 2}, {"message", s.error}}}};
    if (s.parent)
      x["parentSpanId"] = span_hex(s.parent);
    x["flags"] = s.flags;
    out.push_back(std::move(x));
  }
  return {{"resourceSpans",
           {{{"resource",
              {{"attributes", {str("service.name", "troupe"), str("host.name", node_),
                               str("troupe.node", node_)}}}},
             {"scopeSpans", {{{"scope", {{"name", "troupe"}}}, {"spans", out}}}}}}}};
}

} // namespace troupe::trace
