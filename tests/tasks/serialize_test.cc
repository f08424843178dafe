// procpool's archives write exactly the bytes of cereal's binary archive
// (plugins built against either agree on the wire), round-trip every kind
// of value a task can take, and never trust a length field.
#include "tasks/serialize.h"

#include <cereal/archives/binary.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "gtest/gtest.h"

namespace procpool::internal {
namespace {

struct Point {
  double x = 0;
  double y = 0;
  std::string label;
  template <class A>
  void serialize(A& ar) {
    ar(x, y, label);
  }
  bool operator==(const Point&) const = default;
};

struct Empty {
  template <class A>
  void serialize(A&) {}
};

template <class... T>
std::string CerealBytes(const T&... values) {
  std::ostringstream os;
  {
    cereal::BinaryOutputArchive ar(os);
    (ar(values), ...);
  }
  return os.str();
}

template <class... T>
std::string OurBytes(const T&... values) {
  std::string out;
  AppendArchive(&out, values...);
  return out;
}

TEST(SerializeTest, SameBytesAsCerealBinaryArchive) {
  const std::vector<int> ints = {1, -2, 3};
  const std::map<std::string, std::vector<double>> m = {{"a", {1.5}}, {"b", {}}};
  const std::tuple<int, std::string, bool> t{7, "seven", true};
  const std::optional<int64_t> o = 42;
  const std::variant<int, std::string> v = std::string("alt");
  const Point p{1.0, 2.0, "p"};
  const std::vector<bool> bits = {true, false, true};
  EXPECT_EQ(OurBytes(42, 'c', 3.5, uint64_t{1} << 40),
            CerealBytes(42, 'c', 3.5, uint64_t{1} << 40));
  EXPECT_EQ(OurBytes(std::string("hello")), CerealBytes(std::string("hello")));
  EXPECT_EQ(OurBytes(ints, m, t), CerealBytes(ints, m, t));
  EXPECT_EQ(OurBytes(o, v, p, bits), CerealBytes(o, v, p, bits));
  EXPECT_EQ(OurBytes(Empty{}), CerealBytes(Empty{}));
}

TEST(SerializeTest, NumbersWithoutAnArchiveAreCerealBytes) {
  // Lists of numbers skip building an archive (kAllRawBytes): same bytes,
  // same reads, same errors.
  static_assert(kAllRawBytes<int, int>);
  static_assert(kAllRawBytes<double, char, uint64_t, float>);
  static_assert(!kAllRawBytes<int, bool>);
  static_assert(!kAllRawBytes<int, std::string>);
  static_assert(!kAllRawBytes<>);
  EXPECT_EQ(OurBytes(-7, 9), CerealBytes(-7, 9));
  EXPECT_EQ(OurBytes(2.5f, int16_t{-3}, uint8_t{200}, 1e300),
            CerealBytes(2.5f, int16_t{-3}, uint8_t{200}, 1e300));
  int a = 0, b = 0;
  DecodeArchiveInto(CerealBytes(123, -456), a, b);
  EXPECT_EQ(a, 123);
  EXPECT_EQ(b, -456);
  EXPECT_THROW(DecodeArchiveInto(CerealBytes(123), a, b), cereal::Exception);
  EXPECT_THROW(DecodeArchiveInto(CerealBytes(1, 2, 3), a, b), std::runtime_error);
  std::string written;
  WriteArchive(&written, &AppendToString, 5, 6.0);
  EXPECT_EQ(written, CerealBytes(5, 6.0));
}

TEST(SerializeTest, ReadsWhatCerealWrites) {
  const std::vector<Point> points = {{1, 2, "a"}, {3, 4, std::string(1000, 'b')}};
  const std::string bytes = CerealBytes(points, std::string("tail"));
  std::vector<Point> got;
  std::string tail;
  DecodeArchiveInto(bytes, got, tail);
  EXPECT_EQ(got, points);
  EXPECT_EQ(tail, "tail");
}

TEST(SerializeTest, RoundTripsLargeValues) {
  const std::string big(5 << 20, 'x');
  const std::vector<int32_t> many(1 << 20, 7);
  EXPECT_EQ(DecodeArchive<std::string>(OurBytes(big)), big);
  EXPECT_EQ(DecodeArchive<std::vector<int32_t>>(OurBytes(many)), many);
}

TEST(SerializeTest, StringViewIsAStringReadInPlace) {
  const std::string_view text = "some text";
  const std::string bytes = OurBytes(std::string(text), 7);
  std::string_view view;
  int after = 0;
  DecodeArchiveInto(bytes, view, after);
  EXPECT_EQ(view, text);
  EXPECT_EQ(view.data(), bytes.data() + 8);
  EXPECT_EQ(after, 7);
  std::vector<std::string_view> views;
  const std::string list = OurBytes(std::vector<std::string>{"a", "", "bc"});
  DecodeArchiveInto(list, views);
  EXPECT_EQ(views, (std::vector<std::string_view>{"a", "", "bc"}));
  EXPECT_THROW(DecodeArchive<std::string_view>(bytes.substr(0, 12)), cereal::Exception);
}

TEST(SerializeTest, ShortInputThrowsCerealException) {
  std::string bytes = OurBytes(std::string("hello"));
  bytes.pop_back();
  EXPECT_THROW(DecodeArchive<std::string>(bytes), cereal::Exception);
  EXPECT_THROW(DecodeArchive<int64_t>(std::string("abc")), cereal::Exception);
}

TEST(SerializeTest, TrailingBytesAreAnError) {
  std::string bytes = OurBytes(1, 2);
  EXPECT_THROW(DecodeArchive<int>(bytes), std::runtime_error);
}

TEST(SerializeTest, HostileLengthsDoNotAllocate) {
  // A size tag claiming 2^62 elements followed by a few bytes: decoding
  // fails on the missing bytes instead of asking for exabytes.
  std::string bytes = OurBytes(uint64_t{1} << 62) + "abcd";
  EXPECT_THROW(DecodeArchive<std::string>(bytes), cereal::Exception);
  EXPECT_THROW(DecodeArchive<std::vector<int64_t>>(bytes), cereal::Exception);
  EXPECT_THROW(DecodeArchive<std::vector<std::string>>(bytes), cereal::Exception);
}

}  // namespace
}  // namespace procpool::internal
