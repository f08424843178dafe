// Tasks called through the plugin ABI (tasks/abi.h) inside this process.
//
// This test binary is its own plugin: it registers tasks with PROCPOOL_TASK
// and defines the entry point with PROCPOOL_PLUGIN, then calls them through
// the manifest's invoke() exactly as a worker does, without any process.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tasks/abi.h"
#include "tasks/serialize.h"
#include "tasks/signature.h"
#include "tasks/task.h"

namespace procpool_abi_test {

struct Point {
  double x = 0;
  double y = 0;
  template <class A>
  void serialize(A& ar) {
    ar(x, y);
  }
  bool operator==(const Point&) const = default;
};

struct CustomError {};

int Add(int x, int y) { return x + y; }
std::string Greet(const std::string& name) { return "hello " + name; }
Point Scale(Point p, double k) { return Point{p.x * k, p.y * k}; }
int Answer() { return 42; }
int ThrowRuntime(int) { throw std::runtime_error("bad thing"); }
int ThrowInvalid(int) { throw std::invalid_argument("not valid"); }
int ThrowInt(int x) { throw x; }
int ThrowCustom(int) { throw CustomError{}; }
// Where the view it is given points: the task reads its argument in place.
const char* g_viewed = nullptr;
std::string Shout(std::string_view s) {
  g_viewed = s.data();
  return std::string(s) + "!";
}

PROCPOOL_TASK("add", Add);
PROCPOOL_TASK("greet", Greet);
PROCPOOL_TASK("scale", Scale);
PROCPOOL_TASK("answer", Answer);
PROCPOOL_TASK("throw_runtime", ThrowRuntime);
PROCPOOL_TASK("throw_invalid", ThrowInvalid);
PROCPOOL_TASK("throw_int", ThrowInt);
PROCPOOL_TASK("throw_custom", ThrowCustom);
PROCPOOL_TASK("shout", Shout);
PROCPOOL_TASK("twice", [](const std::vector<int>& v) {
  std::vector<int> out;
  for (int x : v) out.push_back(2 * x);
  return out;
});

}  // namespace procpool_abi_test

PROCPOOL_PLUGIN("abi_test")

namespace procpool {
namespace {

using procpool_abi_test::Point;

void AppendToString(void* out, const char* data, size_t len) {
  static_cast<std::string*>(out)->append(data, len);
}

const procpool_manifest_v1& Manifest() { return *procpool_plugin_manifest(); }

const procpool_task_v1& TaskNamed(std::string_view name) {
  const procpool_manifest_v1& m = Manifest();
  for (size_t i = 0; i < m.num_tasks; ++i) {
    if (name == m.tasks[i].name) return m.tasks[i];
  }
  throw std::runtime_error("no task " + std::string(name));
}

struct Outcome {
  int code = -1;
  std::string bytes;
};

Outcome InvokeRaw(std::string_view task, std::string_view args) {
  const procpool_task_v1& t = TaskNamed(task);
  Outcome o;
  o.code = t.invoke(t.ctx, args.data(), args.size(), &o.bytes, &AppendToString);
  return o;
}

template <class... A>
Outcome Invoke(std::string_view task, const A&... args) {
  std::string archive;
  internal::AppendArchive(&archive, args...);
  return InvokeRaw(task, archive);
}

// (type name, what) of an exception outcome.
std::pair<std::string, std::string> DecodeException(const Outcome& o) {
  std::pair<std::string, std::string> out;
  internal::DecodeArchiveInto(o.bytes, out.first, out.second);
  return out;
}

// ---- The manifest ----

TEST(TaskAbiTest, ManifestCarriesTheAbiVersionAndPluginName) {
  EXPECT_EQ(Manifest().abi_version, PROCPOOL_ABI_VERSION);
  EXPECT_STREQ(Manifest().plugin_name, "abi_test");
}

TEST(TaskAbiTest, ManifestListsTasksInRegistrationOrder) {
  std::vector<std::string> names;
  for (size_t i = 0; i < Manifest().num_tasks; ++i) {
    names.emplace_back(Manifest().tasks[i].name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{
                       "add", "greet", "scale", "answer", "throw_runtime",
                       "throw_invalid", "throw_int", "throw_custom", "shout", "twice"}));
}

TEST(TaskAbiTest, ManifestIsTheSameObjectOnEveryCall) {
  EXPECT_EQ(procpool_plugin_manifest(), procpool_plugin_manifest());
}

TEST(TaskAbiTest, ManifestFingerprintMatchesTheCallersSignature) {
  EXPECT_EQ(TaskNamed("add").fingerprint,
            (Signature<int(int, int)>::Fingerprint()));
  EXPECT_EQ(TaskNamed("greet").fingerprint,
            (Signature<std::string(std::string)>::Fingerprint()));
  EXPECT_NE(TaskNamed("add").fingerprint,
            (Signature<double(int, int)>::Fingerprint()));
}

TEST(TaskAbiTest, ManifestHasReadableSignatures) {
  EXPECT_STREQ(TaskNamed("add").signature, "int(int, int)");
  EXPECT_STREQ(TaskNamed("greet").signature, "std::string(std::string)");
  EXPECT_STREQ(TaskNamed("answer").signature, "int()");
  EXPECT_STREQ(TaskNamed("twice").signature,
               "std::vector<int>(std::vector<int>)");
}

// ---- Invoking ----

TEST(TaskAbiTest, InvokeReturnsTheArchiveOfTheResult) {
  Outcome o = Invoke("add", 2, 3);
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_OK);
  EXPECT_EQ(internal::DecodeArchive<int>(o.bytes), 5);
}

TEST(TaskAbiTest, InvokePassesConstReferenceArgumentsByValue) {
  Outcome o = Invoke("greet", std::string("bob"));
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_OK);
  EXPECT_EQ(internal::DecodeArchive<std::string>(o.bytes),
            "hello bob");
}

TEST(TaskAbiTest, InvokeRoundTripsUserStructs) {
  Outcome o = Invoke("scale", Point{1.5, -2}, 2.0);
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_OK);
  EXPECT_EQ(internal::DecodeArchive<Point>(o.bytes), (Point{3, -4}));
}

TEST(TaskAbiTest, InvokeRunsRegisteredLambdas) {
  Outcome o = Invoke("twice", std::vector<int>{1, 2, 3});
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_OK);
  EXPECT_EQ(internal::DecodeArchive<std::vector<int>>(o.bytes),
            (std::vector<int>{2, 4, 6}));
}

TEST(TaskAbiTest, InvokeRunsTasksWithoutArguments) {
  Outcome o = InvokeRaw("answer", "");
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_OK);
  EXPECT_EQ(internal::DecodeArchive<int>(o.bytes), 42);
}

TEST(TaskAbiTest, StringViewArgumentIsAStringThatIsNotCopied) {
  EXPECT_EQ(TaskNamed("shout").fingerprint,
            (Signature<std::string(std::string)>::Fingerprint()));
  EXPECT_STREQ(TaskNamed("shout").signature, "std::string(std::string)");
  std::string archive;
  internal::AppendArchive(&archive, std::string("hey"));
  Outcome o = InvokeRaw("shout", archive);
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_OK);
  EXPECT_EQ(internal::DecodeArchive<std::string>(o.bytes), "hey!");
  // The view points into the archive, after its 8-byte length.
  EXPECT_EQ(procpool_abi_test::g_viewed, archive.data() + 8);
}

TEST(TaskAbiTest, StringViewArgumentLongerThanTheArchiveIsRejected) {
  std::string archive;
  internal::AppendArchive(&archive, std::string("hey"));
  archive.pop_back();
  EXPECT_EQ(InvokeRaw("shout", archive).code, PROCPOOL_INVOKE_BAD_ARGS);
}

// ---- Exceptions stop at the boundary ----

TEST(TaskAbiTest, InvokeCapturesRuntimeErrorTypeAndWhat) {
  Outcome o = Invoke("throw_runtime", 1);
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_EXCEPTION);
  EXPECT_EQ(DecodeException(o), (std::pair<std::string, std::string>(
                                    "std::runtime_error", "bad thing")));
}

TEST(TaskAbiTest, InvokeCapturesInvalidArgumentTypeAndWhat) {
  Outcome o = Invoke("throw_invalid", 1);
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_EXCEPTION);
  EXPECT_EQ(DecodeException(o), (std::pair<std::string, std::string>(
                                    "std::invalid_argument", "not valid")));
}

TEST(TaskAbiTest, InvokeCapturesNonStdExceptionTypeWithEmptyWhat) {
  Outcome o = Invoke("throw_int", 7);
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_EXCEPTION);
  EXPECT_EQ(DecodeException(o),
            (std::pair<std::string, std::string>("int", "")));
}

TEST(TaskAbiTest, InvokeNamesUserExceptionTypes) {
  Outcome o = Invoke("throw_custom", 7);
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_EXCEPTION);
  EXPECT_EQ(DecodeException(o).first, "procpool_abi_test::CustomError");
  EXPECT_EQ(DecodeException(o).second, "");
}

// ---- Argument bytes that do not decode ----

TEST(TaskAbiTest, InvokeRejectsTruncatedArguments) {
  std::string archive;
  internal::AppendArchive(&archive, 2, 3);
  archive.resize(archive.size() - 1);
  Outcome o = InvokeRaw("add", archive);
  EXPECT_EQ(o.code, PROCPOOL_INVOKE_BAD_ARGS);
  EXPECT_FALSE(o.bytes.empty()) << "a bad-args outcome carries a message";
}

TEST(TaskAbiTest, InvokeRejectsMissingArguments) {
  EXPECT_EQ(InvokeRaw("add", "").code, PROCPOOL_INVOKE_BAD_ARGS);
}

TEST(TaskAbiTest, InvokeRejectsTrailingBytes) {
  std::string archive;
  internal::AppendArchive(&archive, 2, 3, 4);
  EXPECT_EQ(InvokeRaw("add", archive).code, PROCPOOL_INVOKE_BAD_ARGS);
}

TEST(TaskAbiTest, InvokeRejectsArgumentsForATaskWithoutArguments) {
  std::string archive;
  internal::AppendArchive(&archive, 1);
  EXPECT_EQ(InvokeRaw("answer", archive).code, PROCPOOL_INVOKE_BAD_ARGS);
}

TEST(TaskAbiTest, InvokeRejectsAnAbsurdStringLength) {
  // A string archive is a u64 length followed by the bytes; claim 2^62.
  std::string archive;
  internal::AppendArchive(&archive, uint64_t{1} << 62);
  archive += "abc";
  EXPECT_EQ(InvokeRaw("greet", archive).code, PROCPOOL_INVOKE_BAD_ARGS);
}

TEST(TaskAbiTest, BadArgumentsMessageNamesTheExpectedSignature) {
  // The message is what the caller will read, so its content is the
  // behaviour here.
  Outcome o = InvokeRaw("add", "x");
  ASSERT_EQ(o.code, PROCPOOL_INVOKE_BAD_ARGS);
  EXPECT_NE(o.bytes.find("int(int, int)"), std::string::npos) << o.bytes;
}

TEST(TaskAbiTest, TheTaskDoesNotRunWhenItsArgumentsDoNotDecode) {
  // A task that throws when run would report EXCEPTION; bad bytes must be
  // reported as BAD_ARGS before the body is reached.
  EXPECT_EQ(InvokeRaw("throw_runtime", "").code, PROCPOOL_INVOKE_BAD_ARGS);
}

}  // namespace
}  // namespace procpool
