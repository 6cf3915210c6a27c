#include "runtime/core/log.hpp"

#include <ctime>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/json_text.hpp"

namespace troupe {

namespace {

constexpr const char* level_names[] = {"error", "warning", "info", "debug", "trace"};
constexpr const char* level_tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"};

/// `2026-11-30T11:09:41.123Z`. The date and time up to the second are
/// formatted once a second per thread; only the milliseconds each line.
void iso_time(std::string& out, int64_t ms) {
  thread_local int64_t cached_second = -1;
  thread_local char cached[64];
  auto secs = ms / 1000;
  if (secs != cached_second) {
    auto t_secs = static_cast<std::time_t>(secs);
    std::tm t{};
    gmtime_r(&t_secs, &t);
    std::snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d.", t.tm_year + 1900,
                  t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec);
    cached_second = secs;
  }
  out += cached;
  auto milli = static_cast<int>(ms % 1000);
  out += static_cast<char>('0' + milli / 100);
  out += static_cast<char>('0' + milli / 10 % 10);
  out += static_cast<char>('0' + milli % 10);
  out += 'Z';
}

/// A field value for the text format: as is, or quoted when it holds a
/// space, a quote, an `=` or a control character (or is empty).
void text_value(std::string& out, const std::string& s) {
  bool plain = !s.empty();
  for (unsigned char c : s)
    if (c <= ' ' || c == '"' || c == '=' || c == 0x7f)
      plain = false;
  if (plain)
    out += s;
  else
    append_json_string(out, s);
}

/// The message on one line: newlines become `\n`, so that one write is one
/// line for every reader.
void one_line(std::string& out, const std::string& s) {
  for (char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
}

} // namespace

const char* to_string(log_level x) {
  return level_names[static_cast<size_t>(x)];
}

caf::expected<log_level> parse_log_level(const std::string& text) {
  for (size_t i = 0; i < 5; ++i)
    if (text == level_names[i])
      return static_cast<log_level>(i);
  if (text == "warn")
    return log_level::warning;
  return caf::make_error(ec::invalid_argument,
                         "unknown log level '" + text
                           + "' (expected error, warning, info, debug or trace)");
}

const char* to_string(log_format x) {
  return x == log_format::json ? "json" : "text";
}

caf::expected<log_format> parse_log_format(const std::string& text) {
  if (text == "text")
    return log_format::text;
  if (text == "json")
    return log_format::json;
  return caf::make_error(ec::invalid_argument,
                         "unknown log format '" + text + "' (expected text or json)");
}

std::shared_ptr<logger> logger::make(std::string node, log_level level, log_format format,
                                     std::FILE* out) {
  return std::make_shared<logger>(std::move(node), level, format, out);
}

logger::logger(std::string node, log_level level, log_format format, std::FILE* out)
  : node_(std::move(node)),
    level_(static_cast<uint8_t>(level)),
    format_(format),
    out_(out) {
}

std::string logger::format_line(int64_t ms, log_level x, const std::string& group,
                                const std::string& event, const std::string& msg) const {
  std::string line;
  line.reserve(64 + msg.size() + group.size() + event.size());
  if (format_ == log_format::json) {
    line += "{\"ts\":\"";
    iso_time(line, ms);
    line += "\",\"level\":\"";
    line += to_string(x);
    line += "\",\"node\":";
    append_json_string(line, node_);
    if (!group.empty()) {
      line += ",\"group\":";
      append_json_string(line, group);
    }
    if (!event.empty()) {
      line += ",\"event\":";
      append_json_string(line, event);
    }
    line += ",\"msg\":";
    append_json_string(line, msg);
    line += '}';
    return line;
  }
  iso_time(line, ms);
  line += ' ';
  line += level_tags[static_cast<size_t>(x)];
  line += " [";
  line += node_;
  line += "] ";
  one_line(line, msg);
  if (!group.empty()) {
    line += " group=";
    text_value(line, group);
  }
  if (!event.empty()) {
    line += " event=";
    text_value(line, event);
  }
  return line;
}

void logger::write(log_level x, const std::string& group, const std::string& event,
                   const std::string& msg) {
  if (!enabled(x))
    return;
  auto line = format_line(unix_ms(), x, group, event, msg);
  line += '\n';
  counts_[static_cast<size_t>(x)].fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> guard{mtx_};
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

bool log_budget::take(uint64_t& held) {
  return take_at(unix_ms() / 1000, held);
}

bool log_budget::take_at(int64_t now, uint64_t& held) {
  held = 0;
  if (now != second_) {
    second_ = now;
    used_ = 0;
    held = held_;
    held_ = 0;
  }
  if (used_ < burst_) {
    ++used_;
    return true;
  }
  ++held_;
  return false;
}

} // namespace troupe
