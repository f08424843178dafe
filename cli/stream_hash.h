// StreamHash: a 64-bit hash of a byte stream, shared by poolrun (its
// checkpoints, the records it leaves workers to read from the input) and
// the worker-side adapter.
//
// Thread-compatible value type.

#ifndef PROCPOOL_CLI_STREAM_HASH_H_
#define PROCPOOL_CLI_STREAM_HASH_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace procpool::cli {

// A 64-bit hash of a byte stream, the same however the stream is cut into
// pieces (not cryptographic: it tells an input apart from an edited one).
class StreamHash {
 public:
  void Update(std::string_view bytes);
  // The hash of all bytes so far.
  uint64_t Value() const;

 private:
  void Block(const void* block);  // 32 bytes

  uint64_t lanes_[4] = {0x243F6A8885A308D3ull, 0x13198A2E03707344ull, 0xA4093822299F31D0ull,
                        0x082EFA98EC4E6C89ull};
  uint64_t total_ = 0;
  unsigned char pending_[32] = {};
  size_t npending_ = 0;
};

// The StreamHash of `bytes` alone.
uint64_t HashBytes(std::string_view bytes);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_STREAM_HASH_H_
