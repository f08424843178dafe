// libtext.so through a pool: every task is registered with the signature
// the header's TaskRefs promise, and runs in a worker, with and without
// the sandbox (PoolOptions::sandbox), so that its allowlist is what the
// text plugin's libraries (libxml2, ICU, RE2, libphonenumber) need.

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugins/text/text.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::MustTask;
using ::procpool::testing::Runfile;

class TextPluginTest : public ::testing::TestWithParam<bool> {};

TEST_P(TextPluginTest, EveryTaskRunsInAWorker) {
  PoolOptions opts;
  opts.max_workers = 2;
  opts.sandbox = GetParam();
  opts.plugins = {Runfile("plugins/text/libtext.so")};
  opts.start_timeout = kWait;
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  ASSERT_TRUE(pool.ok()) << pool.status();

  const std::string html = "<p>Mail <a href='mailto:a@example.com'>me</a>, call "
                           "(650) 253-0000 or see https://example.com/x.</p>";
  EXPECT_EQ(*pool->Submit(MustTask(*pool, text::kNormalize), html).Result(kWait),
            "Mail me, call (650) 253-0000 or see https://example.com/x.");
  EXPECT_EQ(*pool->Submit(MustTask(*pool, text::kNormalizeFold), "ABC").Result(kWait), "abc");
  EXPECT_EQ(*pool->Submit(MustTask(*pool, text::kExtractEmails), html).Result(kWait),
            std::vector<std::string>{"a@example.com"});
  EXPECT_EQ(*pool->Submit(MustTask(*pool, text::kExtractUrls), html).Result(kWait),
            std::vector<std::string>{"https://example.com/x"});
  EXPECT_EQ(*pool->Submit(MustTask(*pool, text::kExtractPhones), html).Result(kWait),
            std::vector<std::string>{"+16502530000"});
  EXPECT_EQ(*pool->Submit(MustTask(*pool, text::kExtractPhonesIn), "020 7946 0958", "GB")
                 .Result(kWait),
            std::vector<std::string>{"+442079460958"});
  EXPECT_EQ(*pool->Submit(MustTask(*pool, text::kTokenCount), html).Result(kWait), 11);
  const std::string h = *pool->Submit(MustTask(*pool, text::kSimHash), html).Result(kWait);
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(*pool->Submit(MustTask(*pool, text::kSimHashDistance), h, h).Result(kWait), 0);

  // A task that throws fails its record only.
  absl::StatusOr<std::vector<std::string>> bad =
      pool->Submit(MustTask(*pool, text::kExtractPhonesIn), "x", "Narnia").Result(kWait);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnknown);

  // The whole sample's worth of HTML shapes: a map with chunks, no worker lost.
  std::vector<std::string> pages;
  for (int i = 0; i < 300; ++i) {
    pages.push_back(absl::StrCat("<html><body><h1>T", i, "</h1><p>caf&eacute; &#x263A; ",
                                 "<script>x()</script>call +1 650 253 0000</p></body></html>"));
  }
  absl::StatusOr<std::vector<std::string>> clean =
      pool->MapAll(MustTask(*pool, text::kNormalize), pages);
  ASSERT_TRUE(clean.ok()) << clean.status();
  EXPECT_EQ((*clean)[7], "T7 caf\u00e9 \u263a call +1 650 253 0000");
  for (const WorkerStats& w : pool->Stats().workers) EXPECT_EQ(w.restarts, 0);
  if (GetParam()) {
    EXPECT_NE(pool->Stats().sandbox, "off");
  }
}

// The sample data set's pages (every kind of noise the generator makes)
// come out the same in a sandboxed worker as in an unconfined one.
TEST(TextPluginSandboxTest, SampleNormalizesTheSameSandboxed) {
  std::ifstream in(Runfile("data/web_sample_small.jsonl"));
  std::vector<std::string> texts;
  for (std::string line; std::getline(in, line) && texts.size() < 1500;) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("text") && j["text"].is_string()) {
      texts.push_back(j["text"].get<std::string>());
    }
  }
  ASSERT_GT(texts.size(), 1000u);
  std::vector<std::string> results[2];
  for (bool sandbox : {false, true}) {
    PoolOptions opts;
    opts.max_workers = 2;
    opts.plugins = {Runfile("plugins/text/libtext.so")};
    opts.start_timeout = kWait;
    opts.sandbox = sandbox;
    absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
    ASSERT_TRUE(pool.ok()) << pool.status();
    for (absl::StatusOr<std::string> r : pool->TryMap(MustTask(*pool, text::kNormalize), texts)) {
      results[sandbox].push_back(r.ok() ? *r : r.status().ToString());
    }
    for (const WorkerStats& w : pool->Stats().workers) EXPECT_EQ(w.restarts, 0) << sandbox;
  }
  ASSERT_EQ(results[0].size(), texts.size());
  EXPECT_EQ(results[0], results[1]);
}

INSTANTIATE_TEST_SUITE_P(SandboxOffAndOn, TextPluginTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Sandboxed" : "Unconfined";
                         });

}  // namespace
}  // namespace procpool
