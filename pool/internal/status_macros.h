// Status plumbing missing from Abseil 20220623.

#ifndef PROCPOOL_POOL_INTERNAL_STATUS_MACROS_H_
#define PROCPOOL_POOL_INTERNAL_STATUS_MACROS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PROCPOOL_INTERNAL_SM_CONCAT2(a, b) a##b
#define PROCPOOL_INTERNAL_SM_CONCAT(a, b) PROCPOOL_INTERNAL_SM_CONCAT2(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define PROCPOOL_RETURN_IF_ERROR(expr)                    \
  do {                                                    \
    ::absl::Status procpool_status_ = (expr);             \
    if (!procpool_status_.ok()) return procpool_status_;  \
  } while (0)

// `lhs = *expr` if `expr` (an absl::StatusOr) is OK, else returns its status.
#define PROCPOOL_ASSIGN_OR_RETURN(lhs, expr)                                 \
  PROCPOOL_INTERNAL_ASSIGN_OR_RETURN(                                        \
      PROCPOOL_INTERNAL_SM_CONCAT(procpool_statusor_, __LINE__), lhs, expr)
#define PROCPOOL_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, expr) \
  auto tmp = (expr);                                       \
  if (!tmp.ok()) return std::move(tmp).status();           \
  lhs = std::move(tmp).value()

namespace procpool::internal {

// The one way errno becomes a Status: "context: strerror (errno N)", with a
// code that fits (ENOENT -> kNotFound, EACCES -> kPermissionDenied, ...).
absl::Status ErrnoToStatus(absl::string_view context, int error_number);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_STATUS_MACROS_H_
