#include "tasks/signature.h"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <vector>

namespace procpool {
namespace {

constexpr std::string_view kStdString =
    "std::__cxx11::basic_string<char, std::char_traits<char>, "
    "std::allocator<char> >";

void ReplaceAll(std::string& s, std::string_view from, std::string_view to) {
  for (size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

bool IsDefaultArgument(std::string_view arg) {
  for (std::string_view prefix :
       {"std::allocator<", "std::char_traits<", "std::less<", "std::hash<",
        "std::equal_to<", "std::default_delete<"}) {
    if (arg.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

// Tidies `s[pos..]` up to the end or to an unbalanced ',' or '>' at depth 0;
// advances pos past what it consumed.
std::string TidyFrom(std::string_view s, size_t& pos) {
  std::string out;
  while (pos < s.size()) {
    char c = s[pos];
    if (c == ',' || c == '>') return out;
    if (c != '<') {
      out += c;
      ++pos;
      continue;
    }
    ++pos;  // '<'
    std::vector<std::string> args;
    while (pos < s.size()) {
      while (pos < s.size() && s[pos] == ' ') ++pos;
      args.push_back(TidyFrom(s, pos));
      while (!args.back().empty() && args.back().back() == ' ') {
        args.back().pop_back();
      }
      if (pos >= s.size()) break;
      if (s[pos++] == '>') break;
    }
    std::string joined;
    for (const std::string& a : args) {
      if (IsDefaultArgument(a)) continue;
      if (!joined.empty()) joined += ", ";
      joined += a;
    }
    out += '<';
    out += joined;
    out += '>';
  }
  return out;
}

}  // namespace

std::string TidyTypeName(std::string_view demangled) {
  std::string s(demangled);
  ReplaceAll(s, kStdString, "std::string");
  ReplaceAll(s, "std::__cxx11::", "std::");
  size_t pos = 0;
  std::string out;
  while (pos < s.size()) {
    out += TidyFrom(s, pos);
    if (pos < s.size()) out += s[pos++];  // stray ',' or '>' at top level
  }
  return out;
}

std::string ReadableTypeName(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  if (status != 0 || name == nullptr) return type.name();
  return TidyTypeName(name.get());
}

ExceptionText DescribeCurrentException(const char* unknown_type) {
  ExceptionText text{unknown_type, ""};
  if (const std::type_info* t = abi::__cxa_current_exception_type()) {
    text.type = ReadableTypeName(*t);
  }
  try {
    throw;
  } catch (const std::exception& e) {
    text.what = e.what();
  } catch (...) {
  }
  return text;
}

}  // namespace procpool
