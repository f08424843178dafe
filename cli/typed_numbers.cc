// Runners for tasks taking one number (parsed from the record or field).
#include <cstdint>
#include <string>
#include <vector>

#include "cli/typed.h"

namespace procpool::cli {
namespace {

template <class R>
void AddAll(std::vector<SupportedTask>* out) {
  out->push_back(typed_internal::Entry<R, int>());
  out->push_back(typed_internal::Entry<R, int64_t>());
  out->push_back(typed_internal::Entry<R, double>());
}

}  // namespace

void AddNumberArgTasks(std::vector<SupportedTask>* out) {
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

const std::vector<SupportedTask>& SupportedTasks() {
  static const std::vector<SupportedTask>* tasks = [] {
    auto* v = new std::vector<SupportedTask>();
    AddStringArgTasks(v);
    AddNumberArgTasks(v);
    return v;
  }();
  return *tasks;
}

}  // namespace procpool::cli
