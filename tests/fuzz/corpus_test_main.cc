// Runs the fuzz target over every file in the seed corpus, so the corpus is
// exercised by `bazel test //...` without clang or libFuzzer.

#include <dirent.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "pool/runfiles.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

TEST(WireCorpusTest, EverySeedDecodesWithoutCrashing) {
  absl::StatusOr<std::string> readme = procpool::FindRunfile("tests/fuzz/corpus/README");
  ASSERT_TRUE(readme.ok()) << readme.status();
  std::string dir = readme->substr(0, readme->rfind('/'));
  DIR* d = ::opendir(dir.c_str());
  ASSERT_NE(d, nullptr);
  int seeds = 0;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name == "README") continue;
    std::ifstream in(dir + "/" + name, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string bytes = ss.str();
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()),
                           bytes.size());
    ++seeds;
  }
  ::closedir(d);
  EXPECT_GE(seeds, 8);
}
