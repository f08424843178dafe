// How values cross the process boundary: cereal binary archives.
//
// Any type cereal can serialize may be a task argument or result: arithmetic
// types, std::string (and, as a task's argument only, std::string_view:
// the same bytes as a std::string, read in place; see below), std::vector,
// std::map, std::unordered_map, std::set, std::pair, std::tuple,
// std::optional, std::variant, std::array, std::chrono durations, and user
// structs with a `serialize` member:
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

#include <cereal/cereal.hpp>
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
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "tasks/abi.h"

namespace procpool::internal {

// The archives every value crosses in. They write and read exactly the bytes
// of cereal's BinaryOutputArchive / BinaryInputArchive (host byte order,
// 64-bit size tags), but over a byte sink and a byte range instead of
// iostreams: building a std::ostream / std::istream costs a locale and a
// dozen dynamic_casts, more than encoding a small task's arguments.
//
// Output goes to a sink function (the plugin ABI's procpool_append_fn), so
// the same archive writes into a std::string in the caller and into the
// worker's buffer from inside a plugin.
class OutputArchive final
    : public cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision> {
 public:
  OutputArchive(void* out, procpool_append_fn append)
      : cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision>(this),
        out_(out),
        append_(append) {}

  void saveBinary(const void* data, std::size_t size) {
    append_(out_, static_cast<const char*>(data), size);
  }

 private:
  void* out_;
  procpool_append_fn append_;
};

// Reads a byte range it does not own. Running out of bytes throws
// cereal::Exception, as cereal's binary archive does.
class InputArchive final
    : public cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision> {
 public:
  InputArchive(const char* data, std::size_t size)
      : cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision>(this),
        next_(data),
        end_(data + size) {}

  void loadBinary(void* data, std::size_t size) {
    std::string_view bytes = Take(size);
    if (size != 0) std::memcpy(data, bytes.data(), size);
  }

  // Bytes not read yet.
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - next_); }

  // The next `size` bytes, in place. Throws cereal::Exception if fewer are
  // left.
  std::string_view Take(std::size_t size) {
    std::size_t left = remaining();
    if (size > left) {
      throw cereal::Exception("Failed to read " + std::to_string(size) +
                              " bytes from input stream! Read " +
                              std::to_string(left));
    }
    std::string_view bytes(next_, size);
    next_ += size;
    return bytes;
  }

 private:
  const char* next_;
  const char* end_;
};

// What cereal's binary archive defines for itself, for ours: arithmetic
// values and binary blobs as raw bytes, names and size tags transparent.
template <class T>
  requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const T& t) {
  ar.saveBinary(std::addressof(t), sizeof(t));
}
template <class T>
  requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, T& t) {
  ar.loadBinary(std::addressof(t), sizeof(t));
}
template <class Archive, class T>
CEREAL_ARCHIVE_RESTRICT(InputArchive, OutputArchive)
CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}
template <class Archive, class T>
CEREAL_ARCHIVE_RESTRICT(InputArchive, OutputArchive)
CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::SizeTag<T>& t) {
  ar(t.size);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const cereal::BinaryData<T>& bd) {
  ar.saveBinary(bd.data, static_cast<std::size_t>(bd.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

// Length fields are not trusted. cereal's own loaders for strings and
// vectors resize to the length they read before reading the bytes, so a
// corrupt or hostile length asks for any amount of memory. These overloads
// (more specialized than cereal's, so they win) grow the container only as
// bytes actually arrive: a bogus length fails with "Failed to read" once the
// input runs out.
inline void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, std::string& s) {
  cereal::size_type n = 0;
  ar(cereal::make_size_tag(n));
  s.clear();
  if (n <= ar.remaining()) {  // the common case: one copy, no zero-filling
    s.assign(ar.Take(static_cast<size_t>(n)));
    return;
  }
  constexpr cereal::size_type kChunk = cereal::size_type{1} << 16;
  while (n > 0) {
    cereal::size_type c = n < kChunk ? n : kChunk;
    size_t old = s.size();
    s.resize(old + static_cast<size_t>(c));
    ar.loadBinary(s.data() + old, static_cast<std::size_t>(c));
    n -= c;
  }
}

// A std::string_view argument crosses as a std::string (the same bytes),
// loaded as a view into the archive's own bytes, not a copy: valid only as
// long as they are (for a task argument, until the task returns). There is
// no saving one: a result never views memory the task does not own (a
// plugin's invoke may not read its arguments once it writes its result;
// see tasks/abi.h).
inline void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, std::string_view& s) {
  cereal::size_type n = 0;
  ar(cereal::make_size_tag(n));
  s = ar.Take(static_cast<size_t>(n));
}

template <class T, class A>
  requires(!std::is_same_v<T, bool>)
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, std::vector<T, A>& v) {
  cereal::size_type n = 0;
  ar(cereal::make_size_tag(n));
  v.clear();
  if constexpr (std::is_arithmetic_v<T>) {
    if (n <= ar.remaining() / sizeof(T)) {
      v.resize(static_cast<size_t>(n));
      ar.loadBinary(v.data(), v.size() * sizeof(T));
      return;
    }
    constexpr cereal::size_type kChunk = (cereal::size_type{1} << 16) / sizeof(T) + 1;
    while (n > 0) {
      cereal::size_type c = n < kChunk ? n : kChunk;
      size_t old = v.size();
      v.resize(old + static_cast<size_t>(c));
      ar.loadBinary(v.data() + old, static_cast<std::size_t>(c) * sizeof(T));
      n -= c;
    }
  } else {
    // Each element takes at least one byte... or none (an empty struct), so
    // reserve only what the remaining bytes could possibly hold.
    if (n <= ar.remaining()) v.reserve(static_cast<size_t>(n));
    for (; n > 0; --n) {
      v.emplace_back();
      ar(v.back());
    }
  }
}

// The sink that appends to a std::string.
inline void AppendToString(void* out, const char* data, size_t len) {
  static_cast<std::string*>(out)->append(data, len);
}

// Values cereal's binary archive writes as their own bytes (numbers and
// characters; not bool, whose bytes need not be 0 or 1). A list of them is
// encoded and decoded without building an archive: a cereal archive's
// constructor and destructor (its type registries) cost more than a few
// numbers, once per map item on both sides. The bytes are the same.
template <class T>
inline constexpr bool kRawBytes =
    std::is_arithmetic_v<T> && !std::is_same_v<std::remove_cv_t<T>, bool>;
template <class... T>
inline constexpr bool kAllRawBytes = (sizeof...(T) > 0) && (kRawBytes<T> && ...);

// Writes the archive of `values...` (in order) through `append`. Throws
// what cereal throws.
template <class... T>
void WriteArchive(void* out, procpool_append_fn append, const T&... values) {
  if constexpr (kAllRawBytes<T...>) {
    char bytes[(sizeof(T) + ...)];
    size_t offset = 0;
    ((std::memcpy(bytes + offset, &values, sizeof(T)), offset += sizeof(T)), ...);
    append(out, bytes, sizeof(bytes));
  } else {
    OutputArchive ar(out, append);
    (ar(values), ...);
  }
}

// Appends the archive of `values...` (in order) to `out`. Throws what cereal
// throws.
template <class... T>
void AppendArchive(std::string* out, const T&... values) {
  WriteArchive(out, &AppendToString, values...);
}

// Decodes `values...` (in order) from `bytes`, which must hold exactly
// them. Throws cereal::Exception when the bytes do not hold them, and
// std::runtime_error when bytes are left over.
template <class... T>
void DecodeArchiveInto(std::string_view bytes, T&... values) {
  if constexpr (kAllRawBytes<T...>) {
    constexpr size_t kSize = (sizeof(T) + ...);
    if (bytes.size() < kSize) {
      throw cereal::Exception("Failed to read " + std::to_string(kSize) +
                              " bytes from input stream! Read " +
                              std::to_string(bytes.size()));
    }
    if (bytes.size() > kSize) {
      throw std::runtime_error("trailing bytes after the archive");
    }
    size_t offset = 0;
    ((std::memcpy(&values, bytes.data() + offset, sizeof(T)), offset += sizeof(T)), ...);
  } else {
    InputArchive ar(bytes.data(), bytes.size());
    (ar(values), ...);
    if (ar.remaining() != 0) {
      throw std::runtime_error("trailing bytes after the archive");
    }
  }
}

// Decodes one value of type T from `bytes`; throws as DecodeArchiveInto.
template <class T>
T DecodeArchive(std::string_view bytes) {
  T value{};
  DecodeArchiveInto(bytes, value);
  return value;
}

}  // namespace procpool::internal

CEREAL_REGISTER_ARCHIVE(procpool::internal::OutputArchive)
CEREAL_REGISTER_ARCHIVE(procpool::internal::InputArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(procpool::internal::InputArchive,
                            procpool::internal::OutputArchive)

#endif  // PROCPOOL_TASKS_SERIALIZE_H_
