// How values cross the process boundary: cereal binary archives.
//
// Any type cereal can serialize may be a task argument or result: arithmetic
// types, std::string, std::vector, std::map, std::unordered_map, std::set,
// std::pair, std::tuple, std::optional, std::variant, std::array,
// std::chrono durations, and user structs with a `serialize` member:
//
//   struct Point {
//     double x, y;
//     template <class Archive> void serialize(Archive& ar) { ar(x, y); }
//   };
//
// Plugins and callers include this header through tasks/task.h and
// pool/pool.h; it never needs to be included directly.
//
// Thread-safe: all functions are reentrant.

#ifndef PROCPOOL_TASKS_SERIALIZE_H_
#define PROCPOOL_TASKS_SERIALIZE_H_

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>
#include <cstddef>
#include <istream>
#include <ostream>
#include <streambuf>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "tasks/abi.h"

// Length fields are not trusted. cereal's own loaders for strings and
// vectors resize to the length they read before reading the bytes, so a
// corrupt or hostile length asks for any amount of memory. These overloads
// (more specialized than cereal's, so they win for the binary archive) grow
// the container only as bytes actually arrive: a bogus length fails with
// cereal's "Failed to read" exception once the input runs out.
namespace cereal {

inline void CEREAL_LOAD_FUNCTION_NAME(BinaryInputArchive& ar, std::string& s) {
  size_type n = 0;
  ar(make_size_tag(n));
  s.clear();
  constexpr size_type kChunk = size_type{1} << 16;
  while (n > 0) {
    size_type c = n < kChunk ? n : kChunk;
    size_t old = s.size();
    s.resize(old + static_cast<size_t>(c));
    ar(binary_data(s.data() + old, static_cast<std::size_t>(c)));
    n -= c;
  }
}

template <class T, class A>
  requires(!std::is_same_v<T, bool>)
void CEREAL_LOAD_FUNCTION_NAME(BinaryInputArchive& ar, std::vector<T, A>& v) {
  size_type n = 0;
  ar(make_size_tag(n));
  v.clear();
  if constexpr (std::is_arithmetic_v<T>) {
    constexpr size_type kChunk = (size_type{1} << 16) / sizeof(T) + 1;
    while (n > 0) {
      size_type c = n < kChunk ? n : kChunk;
      size_t old = v.size();
      v.resize(old + static_cast<size_t>(c));
      ar(binary_data(v.data() + old, static_cast<std::size_t>(c) * sizeof(T)));
      n -= c;
    }
  } else {
    for (; n > 0; --n) {
      v.emplace_back();
      ar(v.back());
    }
  }
}

}  // namespace cereal

namespace procpool::serialize_internal {

// Read-only stream over a byte range it does not own.
class ViewStreambuf final : public std::streambuf {
 public:
  ViewStreambuf(const char* data, size_t size) {
    char* p = const_cast<char*>(data);
    setg(p, p, p + size);
  }
  // Bytes not read yet.
  size_t remaining() const { return static_cast<size_t>(egptr() - gptr()); }
};

// Write-only stream that appends to a std::string it does not own.
class StringAppendStreambuf final : public std::streambuf {
 public:
  explicit StringAppendStreambuf(std::string* out) : out_(out) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    out_->append(s, static_cast<size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) out_->push_back(static_cast<char>(c));
    return traits_type::not_eof(c);
  }

 private:
  std::string* out_;
};

// Write-only stream that hands bytes to a C callback (the plugin ABI).
class CallbackStreambuf final : public std::streambuf {
 public:
  CallbackStreambuf(void* out, procpool_append_fn append)
      : out_(out), append_(append) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    append_(out_, s, static_cast<size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      char ch = static_cast<char>(c);
      append_(out_, &ch, 1);
    }
    return traits_type::not_eof(c);
  }

 private:
  void* out_;
  procpool_append_fn append_;
};

// Appends the archive of `values...` (in order) to `out`. Throws what cereal
// throws.
template <class... T>
void AppendArchive(std::string* out, const T&... values) {
  StringAppendStreambuf buf(out);
  std::ostream os(&buf);
  cereal::BinaryOutputArchive ar(os);
  (ar(values), ...);
}

// Decodes one value of type T from `bytes`. Throws cereal::Exception (or
// std::bad_alloc on absurd lengths) when the bytes do not hold a T, and
// std::runtime_error when bytes are left over.
template <class T>
T DecodeArchive(std::string_view bytes) {
  ViewStreambuf buf(bytes.data(), bytes.size());
  std::istream is(&buf);
  cereal::BinaryInputArchive ar(is);
  T value{};
  ar(value);
  if (buf.remaining() != 0) {
    throw std::runtime_error("trailing bytes after the archive");
  }
  return value;
}

}  // namespace procpool::serialize_internal

#endif  // PROCPOOL_TASKS_SERIALIZE_H_
