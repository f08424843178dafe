// ThreadSanitizer support for Debian's Abseil (tsan config only).
//
// Debian builds libabsl_synchronization without TSan, so TSan cannot see
// absl::Mutex or absl::Notification and would report every access they
// guard as a race. This file interposes the library's exported lock entry
// points (the dynamic linker prefers a program's own definitions), calls
// the real ones through dlsym(RTLD_NEXT), and tells TSan about the
// happens-before edges they create: release before unlocking (or waiting,
// which unlocks), acquire after locking (or waking).

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace {

template <class Fn>
Fn Real(const char* symbol) {
  void* p = ::dlsym(RTLD_NEXT, symbol);
  if (p == nullptr) {
    std::fprintf(stderr, "absl_tsan_shim: %s not found\n", symbol);
    std::abort();
  }
  return reinterpret_cast<Fn>(p);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}

bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>("_ZN4absl7debian35Mutex7TryLockEv");
  bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderUnlock() {
  static auto real =
      Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

// Waiting is reimplemented on top of Lock/Unlock: absl evaluates a
// waiter's Condition inside its own (uninstrumented) code, after relocking
// internally, where TSan cannot see the acquire. Here the condition is
// evaluated by this thread right after an annotated lock. TSan builds only;
// the polling costs latency, not correctness.
namespace {
bool WaitUntil(Mutex* mu, const Condition& cond, absl::Time deadline) {
  static auto lock = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex4LockEv");
  static auto unlock = Real<void (*)(Mutex*)>("_ZN4absl7debian35Mutex6UnlockEv");
  while (!cond.Eval()) {
    if (absl::Now() >= deadline) return false;
    __tsan_release(mu);
    unlock(mu);
    absl::SleepFor(absl::Microseconds(50));
    lock(mu);
    __tsan_acquire(mu);
  }
  return true;
}
}  // namespace

void Mutex::LockWhen(const Condition& cond) {
  Lock();
  WaitUntil(this, cond, absl::InfiniteFuture());
}

void Mutex::Await(const Condition& cond) {
  WaitUntil(this, cond, absl::InfiniteFuture());
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  return WaitUntil(this, cond, absl::Now() + timeout);
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  return WaitUntil(this, cond, deadline);
}

void Notification::Notify() {
  static auto real =
      Real<void (*)(Notification*)>("_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  static auto real = Real<void (*)(const Notification*)>(
      "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  static auto real = Real<bool (*)(const Notification*, absl::Duration)>(
      "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  bool r = real(this, timeout);
  if (r) __tsan_acquire(const_cast<Notification*>(this));
  return r;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  static auto real = Real<bool (*)(const Notification*, absl::Time)>(
      "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  bool r = real(this, deadline);
  if (r) __tsan_acquire(const_cast<Notification*>(this));
  return r;
}

// absl::Status shares its message between copies through a reference
// count. Taking a reference is inline (instrumented), but dropping one,
// and freeing the message with the last, happens in the uninstrumented
// library, so TSan would see the free race with every earlier read in
// another thread. The usual refcount annotation: every drop releases, and
// the drop that may free acquires what all the others released.
void Status::UnrefNonInlined(uintptr_t rep) {
  static auto real =
      Real<void (*)(uintptr_t)>("_ZN4absl7debian36Status15UnrefNonInlinedEm");
  void* shared = reinterpret_cast<void*>(rep - 1);
  __tsan_release(shared);
  __tsan_acquire(shared);
  real(rep);
}

ABSL_NAMESPACE_END
}  // namespace absl

// Abseil's debug-build deadlock detector keeps a graph in memory that TSan
// sees only through interceptors and reports as racy; it adds nothing under
// TSan, which has its own lock-order checking.
static const bool kAbslDeadlockDetectionOff =
    (absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore), true);

// Races TSan reports inside Abseil's own uninstrumented code (its deadlock
// detector's graph lives in memory TSan sees only through interceptors).
extern "C" const char* __tsan_default_suppressions() {
  return "race:absl::debian3::synchronization_internal::GraphCycles\n"
         "race:libabsl_graphcycles_internal.so\n"
         "race:libabsl_malloc_internal.so\n";
}
