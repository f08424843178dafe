// libFuzzer target for everything that decodes bytes from a worker or a
// pool: the frame splitter and the three checked message decoders.
//
// Run: scripts/fuzz.sh [seconds]   (clang, libFuzzer, ASan + UBSan)
// The same body runs over the seed corpus in `bazel test` (wire_corpus_test).

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pool/internal/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace procpool::internal;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Small limit so that the fuzzer explores the oversize path too.
  FrameDecoder decoder(1 << 16);
  // Feed in two uneven pieces: frames split across reads must work.
  size_t cut = size / 3;
  decoder.Append(bytes.substr(0, cut));
  bool more = true;
  for (int pass = 0; pass < 2; ++pass) {
    while (more) {
      auto frame = decoder.Next();
      if (!frame.ok()) return 0;  // a malformed header ends the stream
      if (!frame->has_value()) break;
      std::string_view payload = (*frame)->payload;
      switch ((*frame)->type) {
        case FrameType::kHello:
          (void)DecodeHello(payload);
          break;
        case FrameType::kCalls:
          (void)DecodeCalls(payload);
          break;
        case FrameType::kResults:
          (void)DecodeResults(payload);
          break;
      }
    }
    if (pass == 0) decoder.Append(bytes.substr(cut));
  }
  // Every payload decoder on the raw bytes as well.
  (void)DecodeHello(bytes);
  (void)DecodeCalls(bytes);
  (void)DecodeResults(bytes);
  return 0;
}
