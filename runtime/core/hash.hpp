#pragma once

#include <cstdint>
#include <string_view>

namespace troupe {

/// FNV-1a, 32 bits: a stable hash of `x` (the same on every node, build and
/// run), for choosing among a fixed set by key: the alerter's partition of
/// a transaction id, the model-trainer's held-out slice.
constexpr uint32_t fnv1a_32(std::string_view x) {
  uint32_t h = 2166136261u;
  for (unsigned char c : x) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

/// FNV-1a, 64 bits (the ranking's A/B buckets).
constexpr uint64_t fnv1a_64(std::string_view x) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : x) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

} // namespace troupe
