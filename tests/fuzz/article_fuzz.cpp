// libFuzzer harness: the news groups' article parser. Any bytes get an
// article or a reason, and a parsed article survives its own JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "actors/news/article.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes{reinterpret_cast<const char*>(data), size};
  auto a = troupe::news::parse_article(bytes);
  if (!a)
    return 0;
  auto again = troupe::news::parse_article(troupe::news::to_json(*a), 1 << 20);
  if (!again || again->id != a->id || again->headline != a->headline
      || again->category != a->category)
    std::abort();
  return 0;
}
