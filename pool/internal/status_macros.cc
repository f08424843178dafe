#include "pool/internal/status_macros.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace procpool::internal {

absl::Status ErrnoToStatus(absl::string_view context, int error_number) {
  std::string message =
      absl::StrCat(context, ": ", std::strerror(error_number), " (errno ",
                   error_number, ")");
  switch (error_number) {
    case ENOENT:
    case ESRCH:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EINVAL:
    case ENOEXEC:
    case ENOTDIR:
    case EISDIR:
      return absl::InvalidArgumentError(message);
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOSPC:
    case EAGAIN:
      return absl::ResourceExhaustedError(message);
    case EPIPE:
    case ECONNRESET:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace procpool::internal
