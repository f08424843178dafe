#include "cli/stream_hash.h"

#include <algorithm>
#include <cstring>

namespace procpool::cli {

namespace {
uint64_t MixWord(uint64_t h, uint64_t w) {
  h = (h ^ w) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}
}  // namespace

void StreamHash::Update(std::string_view bytes) {
  const char* p = bytes.data();
  size_t n = bytes.size();
  total_ += n;
  if (npending_ > 0) {
    const size_t take = std::min(n, sizeof(pending_) - npending_);
    std::memcpy(pending_ + npending_, p, take);
    npending_ += take;
    p += take;
    n -= take;
    if (npending_ < sizeof(pending_)) return;
    Block(pending_);
    npending_ = 0;
  }
  // Four independent lanes, 32 bytes a step.
  while (n >= sizeof(pending_)) {
    Block(p);
    p += sizeof(pending_);
    n -= sizeof(pending_);
  }
  std::memcpy(pending_, p, n);
  npending_ = n;
}

void StreamHash::Block(const void* block) {
  uint64_t w[4];
  std::memcpy(w, block, sizeof(w));
  for (int k = 0; k < 4; ++k) lanes_[k] = MixWord(lanes_[k], w[k]);
}

uint64_t StreamHash::Value() const {
  uint64_t h = MixWord(lanes_[0], lanes_[1]);
  h = MixWord(h, lanes_[2]);
  h = MixWord(h, lanes_[3]);
  for (size_t i = 0; i < npending_; i += 8) {
    uint64_t w = 0;
    std::memcpy(&w, pending_ + i, std::min<size_t>(8, npending_ - i));
    h = MixWord(h, w);
  }
  return MixWord(h, total_);
}

uint64_t HashBytes(std::string_view bytes) {
  StreamHash h;
  h.Update(bytes);
  return h.Value();
}

}  // namespace procpool::cli
