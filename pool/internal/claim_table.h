// ClaimTable: who gets to decide about a call a worker has received but
// not yet started, the worker (by starting it) or the pool (by cancelling
// or taking it back).
//
// A worker runs its calls one at a time, in the order they arrived, and
// both sides number them the same way: the n-th call the pool sends a
// worker has sequence number n (from 1). For each call there is one word of
// shared memory; each side claims it with a compare-and-swap, and exactly
// one of them wins:
//   - the worker, before it runs call n: TryStart(n). If it loses, the call
//     was cancelled and the worker skips it (answering ResultCode::kSkipped).
//   - the pool, to cancel call n or give it to another worker: TryCancel(n).
//     If it wins, the worker will never run the call.
// So Cancel() returning true means the task never ran, and the pool knows
// exactly which calls a dead worker had started.
//
// The words are reused modulo kClaimSlots, which is safe as long as a
// worker never holds more than kClaimSlots calls that it has not answered
// (the pool's dispatch keeps to that).
//
// Thread-safe and process-safe: the words are lock-free atomics in memory
// the pool and the worker both map. The table does not own that memory;
// `keepalive` (set by whoever made the table) keeps it mapped for as long as
// anyone holds the table.

#ifndef PROCPOOL_POOL_INTERNAL_CLAIM_TABLE_H_
#define PROCPOOL_POOL_INTERNAL_CLAIM_TABLE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace procpool::internal {

inline constexpr size_t kClaimSlots = 8192;
inline constexpr size_t kClaimTableBytes = kClaimSlots * sizeof(uint64_t);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

class ClaimTable {
 public:
  // `words` points at kClaimSlots zero-initialised words.
  ClaimTable(std::atomic<uint64_t>* words, std::shared_ptr<const void> keepalive)
      : words_(words), keepalive_(std::move(keepalive)) {}

  // The worker's side: true if it may run call `seq`, false if the pool
  // cancelled it.
  bool TryStart(uint64_t seq) { return Claim(seq, kStarted); }

  // The pool's side: true if the worker will never run call `seq`.
  bool TryCancel(uint64_t seq) { return Claim(seq, kCancelled); }

  // Whether the worker claimed call `seq` (it started it, and may have
  // finished it). Meaningful for calls not older than kClaimSlots.
  bool Started(uint64_t seq) const {
    return Word(seq).load(std::memory_order_acquire) == Tag(seq, kStarted);
  }

 private:
  static constexpr uint64_t kStarted = 1;
  static constexpr uint64_t kCancelled = 2;
  static uint64_t Tag(uint64_t seq, uint64_t state) { return (seq << 2) | state; }
  std::atomic<uint64_t>& Word(uint64_t seq) const { return words_[seq % kClaimSlots]; }

  bool Claim(uint64_t seq, uint64_t state) {
    std::atomic<uint64_t>& w = Word(seq);
    uint64_t v = w.load(std::memory_order_acquire);
    while (true) {
      if (v == Tag(seq, state)) return true;  // claimed by this side before
      if ((v >> 2) == seq) return false;       // the other side won
      // An older call's word: whoever swaps in call `seq` first wins.
      if (w.compare_exchange_weak(v, Tag(seq, state), std::memory_order_acq_rel,
                                  std::memory_order_acquire)) {
        return true;
      }
    }
  }

  std::atomic<uint64_t>* words_;
  std::shared_ptr<const void> keepalive_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_CLAIM_TABLE_H_
