#include "pool/internal/mpi_transport.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace procpool::internal {

// ---- MpiWorld ----

MpiWorld& MpiWorld::Get() {
  static MpiWorld* world = new MpiWorld;  // never destroyed: used at exit
  return *world;
}

void MpiWorld::Set(MPI_Comm comm, int rank, int size) {
  absl::MutexLock l(&mu_);
  comm_ = comm;
  rank_ = rank;
  size_ = size;
}

bool MpiWorld::initialized() const {
  absl::MutexLock l(&mu_);
  return comm_ != MPI_COMM_NULL;
}

MPI_Comm MpiWorld::comm() const {
  absl::MutexLock l(&mu_);
  return comm_;
}

int MpiWorld::rank() const {
  absl::MutexLock l(&mu_);
  return rank_;
}

int MpiWorld::size() const {
  absl::MutexLock l(&mu_);
  return size_;
}

void MpiWorld::MarkLost(int rank) {
  absl::MutexLock l(&mu_);
  lost_.insert(rank);
}

bool MpiWorld::IsLost(int rank) const {
  absl::MutexLock l(&mu_);
  return lost_.contains(rank);
}

bool MpiWorld::AnyLost() const {
  absl::MutexLock l(&mu_);
  return !lost_.empty();
}

void MpiWorld::SetSkipFinalize() {
  absl::MutexLock l(&mu_);
  skip_finalize_ = true;
}

bool MpiWorld::skip_finalize() const {
  absl::MutexLock l(&mu_);
  return skip_finalize_ || !lost_.empty();
}

bool MpiWorld::TryAcquirePool() {
  absl::MutexLock l(&mu_);
  if (pool_active_) return false;
  pool_active_ = true;
  return true;
}

void MpiWorld::ReleasePool() {
  absl::MutexLock l(&mu_);
  pool_active_ = false;
}

bool MpiWorld::pool_active() const {
  absl::MutexLock l(&mu_);
  return pool_active_;
}

uint64_t MpiWorld::NextEpoch() {
  absl::MutexLock l(&mu_);
  return ++epoch_;
}

// ---- Messages ----

uint64_t MpiMessageEpoch(std::string_view bytes) {
  if (bytes.size() < 8) return 0;
  uint64_t e = 0;
  for (int i = 0; i < 8; ++i) {
    e |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  }
  return e;
}

std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) {
    return absl::StrCat("MPI error ", code);
  }
  return std::string(text, static_cast<size_t>(len));
}

// ---- MpiTransport ----

MpiTransport::~MpiTransport() {
  FlushUntil(absl::Now() + linger_);
  // What is left can no longer complete in time: MPI keeps the requests,
  // and the buffers stay allocated for it.
  for (Pending& p : sends_) {
    MPI_Request_free(&p.request);
    Bury(std::move(p.buffer));
  }
  for (auto& [source, queue] : receiving_) {
    for (Receiving& r : queue) Bury(std::move(r.buffer));
  }
}

void MpiTransport::Bury(std::unique_ptr<std::string> buffer) {
  static absl::Mutex mu;
  static auto* graveyard = new std::vector<std::unique_ptr<std::string>>;
  absl::MutexLock l(&mu);
  graveyard->push_back(std::move(buffer));
}

absl::Status MpiTransport::Send(int rank, int tag, std::string bytes) {
  if (abandoned_.contains(rank)) {
    return absl::FailedPreconditionError(
        absl::StrCat("MPI rank ", rank, " is lost; nothing is sent to it"));
  }
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a message of ", bytes.size(), " bytes for MPI rank ", rank,
        " is over MPI's 2 GiB limit"));
  }
  Pending p{rank, MPI_REQUEST_NULL, std::make_unique<std::string>(std::move(bytes))};
  int rc = MPI_Isend(p.buffer->data(), static_cast<int>(p.buffer->size()),
                     MPI_BYTE, rank, tag, comm_, &p.request);
  if (rc != MPI_SUCCESS) {
    return absl::InternalError(absl::StrCat("MPI_Isend to rank ", rank, ": ",
                                            MpiErrorString(rc)));
  }
  sends_.push_back(std::move(p));
  return absl::OkStatus();
}

void MpiTransport::ProgressSends() {
  std::erase_if(sends_, [](Pending& p) {
    int done = 0;
    if (MPI_Test(&p.request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
      return false;  // left for the destructor; the rank is probably lost
    }
    return done != 0;
  });
}

absl::StatusOr<std::optional<MpiMessage>> MpiTransport::Poll() {
  if (!sends_.empty()) ProgressSends();
  // Match what has arrived (a few at a time, so a flood from one rank does
  // not starve the caller's other work).
  for (int i = 0; i < 16; ++i) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    int rc = MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &msg, &status);
    if (rc != MPI_SUCCESS) {
      return absl::InternalError(absl::StrCat("MPI_Improbe: ", MpiErrorString(rc)));
    }
    if (!flag) break;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    Receiving r{status.MPI_SOURCE, status.MPI_TAG, MPI_REQUEST_NULL,
                std::make_unique<std::string>(static_cast<size_t>(count), '\0')};
    rc = MPI_Imrecv(r.buffer->data(), count, MPI_BYTE, &msg, &r.request);
    if (rc != MPI_SUCCESS) {
      return absl::InternalError(absl::StrCat("MPI_Imrecv from rank ", r.source,
                                              ": ", MpiErrorString(rc)));
    }
    if (abandoned_.contains(r.source)) {
      Bury(std::move(r.buffer));
      continue;
    }
    receiving_[r.source].push_back(std::move(r));
  }
  for (auto it = receiving_.begin(); it != receiving_.end(); ++it) {
    std::deque<Receiving>& queue = it->second;
    if (queue.empty()) continue;
    Receiving& front = queue.front();
    int done = 0;
    int rc = MPI_Test(&front.request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      return absl::InternalError(absl::StrCat("receiving from MPI rank ",
                                              front.source, ": ",
                                              MpiErrorString(rc)));
    }
    if (!done) continue;
    MpiMessage out{front.source, front.tag, std::move(*front.buffer)};
    queue.pop_front();
    if (queue.empty()) receiving_.erase(it);
    return std::optional<MpiMessage>(std::move(out));
  }
  return std::optional<MpiMessage>();
}

void MpiTransport::Abandon(int rank) {
  if (!abandoned_.insert(rank).second) return;
  std::erase_if(sends_, [rank](Pending& p) {
    if (p.rank != rank) return false;
    MPI_Request_free(&p.request);
    Bury(std::move(p.buffer));
    return true;
  });
  auto it = receiving_.find(rank);
  if (it != receiving_.end()) {
    for (Receiving& r : it->second) Bury(std::move(r.buffer));
    receiving_.erase(it);
  }
}

bool MpiTransport::FlushUntil(absl::Time deadline) {
  while (true) {
    ProgressSends();
    if (sends_.empty()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Microseconds(100));
  }
}

}  // namespace procpool::internal
