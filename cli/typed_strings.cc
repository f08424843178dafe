// Runners for tasks taking one to three strings.
#include <cstdint>
#include <string>
#include <vector>

#include "cli/typed.h"

namespace procpool::cli {
namespace {

using S = std::string;

template <class R>
void AddAll(std::vector<SupportedTask>* out) {
  out->push_back(typed_internal::Entry<R, S>());
  out->push_back(typed_internal::Entry<R, S, S>());
  out->push_back(typed_internal::Entry<R, S, S, S>());
}

}  // namespace

void AddStringArgTasks(std::vector<SupportedTask>* out) {
  AddAll<std::string>(out);
  AddAll<bool>(out);
  AddAll<int>(out);
  AddAll<int64_t>(out);
  AddAll<uint64_t>(out);
  AddAll<double>(out);
  AddAll<std::vector<std::string>>(out);
  AddAll<std::vector<int>>(out);
  AddAll<std::vector<int64_t>>(out);
  AddAll<std::vector<double>>(out);
}

}  // namespace procpool::cli
