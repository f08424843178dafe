// Signature fingerprints and readable type names (tasks/signature.h).

#include "tasks/signature.h"

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace procpool {
namespace {

struct Point {
  double x, y;
};

template <class A, class B>
bool SameFingerprint() {
  return Signature<A>::Fingerprint() == Signature<B>::Fingerprint();
}

// ---- Fingerprints ----

TEST(SignatureTest, FingerprintTreatsConstReferenceArgumentAsValue) {
  EXPECT_TRUE((SameFingerprint<int(const std::string&), int(std::string)>()));
  EXPECT_TRUE((SameFingerprint<double(const std::vector<double>&),
                               double(std::vector<double>)>()));
}

TEST(SignatureTest, StringViewArgumentIsAString) {
  EXPECT_TRUE((SameFingerprint<int(std::string_view), int(std::string)>()));
  EXPECT_TRUE((SameFingerprint<int(std::string_view, const std::string&),
                               int(std::string, std::string)>()));
  EXPECT_EQ((Signature<std::string(std::string_view)>::Readable()),
            "std::string(std::string)");
}

TEST(SignatureTest, FingerprintTreatsRvalueReferenceArgumentAsValue) {
  EXPECT_TRUE((SameFingerprint<int(std::string &&), int(std::string)>()));
}

TEST(SignatureTest, FingerprintIgnoresConstOnTheResult) {
  EXPECT_TRUE((SameFingerprint<const std::string(int), std::string(int)>()));
}

TEST(SignatureTest, FingerprintIsStableAcrossCalls) {
  EXPECT_EQ((Signature<int(int, int)>::Fingerprint()),
            (Signature<int(int, int)>::Fingerprint()));
}

TEST(SignatureTest, FingerprintDiffersWhenTheResultTypeDiffers) {
  EXPECT_FALSE((SameFingerprint<int(int, int), double(int, int)>()));
}

TEST(SignatureTest, FingerprintDiffersWhenArgumentOrderDiffers) {
  EXPECT_FALSE((SameFingerprint<int(int, double), int(double, int)>()));
}

TEST(SignatureTest, FingerprintDiffersWhenArityDiffers) {
  EXPECT_FALSE((SameFingerprint<int(int), int(int, int)>()));
  EXPECT_FALSE((SameFingerprint<int(), int(int)>()));
}

TEST(SignatureTest, FingerprintDistinguishesIntegerWidths) {
  EXPECT_FALSE((SameFingerprint<int64_t(int64_t), int(int)>()));
  EXPECT_FALSE((SameFingerprint<uint64_t(int), int64_t(int)>()));
}

TEST(SignatureTest, Fnv1a64MatchesReferenceValues) {
  // Published FNV-1a 64-bit test vectors.
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ull);
}

// ---- Readable signatures ----

TEST(SignatureTest, ReadableSignatureOfTwoIntsIsIntIntInt) {
  EXPECT_EQ((Signature<int(int, int)>::Readable()), "int(int, int)");
  EXPECT_EQ((Signature<double(int, int)>::Readable()), "double(int, int)");
}

TEST(SignatureTest, ReadableSignatureShowsDecayedTidyArguments) {
  EXPECT_EQ((Signature<std::string(const std::string&)>::Readable()),
            "std::string(std::string)");
  EXPECT_EQ((Signature<double(const std::vector<double>&)>::Readable()),
            "double(std::vector<double>)");
}

TEST(SignatureTest, ReadableSignatureOfNoArgumentsHasEmptyParentheses) {
  EXPECT_EQ((Signature<int()>::Readable()), "int()");
}

// ---- ReadableTypeName ----

TEST(ReadableTypeNameTest, StdStringIsStdString) {
  EXPECT_EQ(ReadableTypeName(typeid(std::string)), "std::string");
}

TEST(ReadableTypeNameTest, VectorDropsTheDefaultAllocator) {
  EXPECT_EQ(ReadableTypeName(typeid(std::vector<int>)), "std::vector<int>");
}

TEST(ReadableTypeNameTest, MapDropsDefaultComparatorAndAllocator) {
  EXPECT_EQ(ReadableTypeName(typeid(std::map<std::string, int>)),
            "std::map<std::string, int>");
}

TEST(ReadableTypeNameTest, NestedContainersAreTidiedAtEveryLevel) {
  EXPECT_EQ(ReadableTypeName(typeid(
                std::unordered_map<std::string, std::vector<std::string>>)),
            "std::unordered_map<std::string, std::vector<std::string>>");
}

TEST(ReadableTypeNameTest, PairAndTupleKeepAllTheirArguments) {
  EXPECT_EQ(ReadableTypeName(typeid(std::pair<int, double>)),
            "std::pair<int, double>");
  EXPECT_EQ(ReadableTypeName(typeid(std::tuple<int, std::string, char>)),
            "std::tuple<int, std::string, char>");
}

TEST(ReadableTypeNameTest, FundamentalTypesKeepTheirNames) {
  EXPECT_EQ(ReadableTypeName(typeid(int)), "int");
  EXPECT_EQ(ReadableTypeName(typeid(double)), "double");
  EXPECT_EQ(ReadableTypeName(typeid(unsigned long)), "unsigned long");
}

TEST(ReadableTypeNameTest, UserTypesAreDemangledWithTheirNamespace) {
  EXPECT_EQ(ReadableTypeName(typeid(Point)),
            "procpool::(anonymous namespace)::Point");
}

// ---- TidyTypeName on demangled text ----

TEST(TidyTypeNameTest, CollapsesTheCxx11StringSpelling) {
  EXPECT_EQ(TidyTypeName("std::__cxx11::basic_string<char, "
                         "std::char_traits<char>, std::allocator<char> >"),
            "std::string");
}

TEST(TidyTypeNameTest, DropsAllocatorFromVector) {
  EXPECT_EQ(TidyTypeName("std::vector<int, std::allocator<int> >"),
            "std::vector<int>");
}

TEST(TidyTypeNameTest, DropsLessAndAllocatorFromMapOfStrings) {
  const std::string s =
      "std::__cxx11::basic_string<char, std::char_traits<char>, "
      "std::allocator<char> >";
  EXPECT_EQ(
      TidyTypeName("std::map<" + s + ", int, std::less<" + s +
                   " >, std::allocator<std::pair<" + s + " const, int> > >"),
      "std::map<std::string, int>");
}

TEST(TidyTypeNameTest, DropsHashAndEqualToFromUnorderedSet) {
  EXPECT_EQ(TidyTypeName("std::unordered_set<long, std::hash<long>, "
                         "std::equal_to<long>, std::allocator<long> >"),
            "std::unordered_set<long>");
}

TEST(TidyTypeNameTest, KeepsNonDefaultArguments) {
  EXPECT_EQ(TidyTypeName("std::array<int, 3ul>"), "std::array<int, 3ul>");
  EXPECT_EQ(TidyTypeName("std::map<int, int, std::greater<int>, "
                         "std::allocator<std::pair<int const, int> > >"),
            "std::map<int, int, std::greater<int>>");
}

TEST(TidyTypeNameTest, LeavesNamesWithoutTemplatesAlone) {
  EXPECT_EQ(TidyTypeName("int"), "int");
  EXPECT_EQ(TidyTypeName("ns::Widget"), "ns::Widget");
  EXPECT_EQ(TidyTypeName(""), "");
}

}  // namespace
}  // namespace procpool
