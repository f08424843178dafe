// Type signatures of tasks, computed the same way in a plugin (when it
// registers a task) and in the caller (when it asks for a typed handle), so
// that a mismatch is caught by comparing two numbers, and reported with two
// readable strings.
//
// Arguments and results are compared after std::decay: `const std::string&`
// and `std::string` are the same argument, and so is `std::string_view`,
// which crosses as the same bytes (see WireType).
//
// Thread-safe: all functions are pure.

#ifndef PROCPOOL_TASKS_SIGNATURE_H_
#define PROCPOOL_TASKS_SIGNATURE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>

namespace procpool {

// Demangled name of `type`, tidied for people: `std::string` instead of
// `std::__cxx11::basic_string<char, ...>`, and default template arguments
// (allocators, comparators, char traits) dropped.
std::string ReadableTypeName(const std::type_info& type);

// The exception being handled (call it inside a catch block): its type's
// readable name (`unknown_type` when the runtime cannot tell) and, for a
// std::exception, its what() (else empty).
struct ExceptionText {
  std::string type;
  std::string what;
};
ExceptionText DescribeCurrentException(const char* unknown_type = "unknown exception");

// Same tidying for an already demangled name. Exposed for tests.
std::string TidyTypeName(std::string_view demangled);

// 64-bit FNV-1a of `bytes`.
constexpr uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// The type a value of type T crosses as: T after std::decay, except that a
// std::string_view argument crosses as a std::string (the same bytes; a
// task may take its string arguments either way).
template <class T>
struct WireTypeOf {
  using type = std::decay_t<T>;
};
template <>
struct WireTypeOf<std::string_view> {
  using type = std::string;
};
template <class T>
using WireType = typename WireTypeOf<std::decay_t<T>>::type;

template <class Sig>
struct Signature;

// Signature<R(Args...)>::Fingerprint() and ::Readable().
template <class R, class... Args>
struct Signature<R(Args...)> {
  using Decayed = std::decay_t<R>(WireType<Args>...);

  static uint64_t Fingerprint() { return Fnv1a64(typeid(Decayed).name()); }

  static std::string Readable() {
    std::string out = ReadableTypeName(typeid(std::decay_t<R>));
    out += "(";
    bool first = true;
    ((out += (first ? "" : ", "), out += ReadableTypeName(typeid(WireType<Args>)),
      first = false),
     ...);
    out += ")";
    return out;
  }
};

}  // namespace procpool

#endif  // PROCPOOL_TASKS_SIGNATURE_H_
