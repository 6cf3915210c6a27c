// libFuzzer harness: the ingestor's transaction parser. Any bytes get a
// transaction or a reason (never a crash), and a parsed transaction
// survives its own JSON unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "actors/ingestor/transaction_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes{reinterpret_cast<const char*>(data), size};
  auto tx = troupe::ingest::parse_transaction(bytes);
  if (!tx)
    return 0;
  auto again = troupe::ingest::parse_transaction(troupe::ingest::to_json(*tx), 1 << 20);
  if (!again || again->id != tx->id || again->user != tx->user || again->amount != tx->amount
      || again->timestamp != tx->timestamp || again->country != tx->country)
    std::abort();
  return 0;
}
