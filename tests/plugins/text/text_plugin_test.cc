// libtext.so through a pool: every task is registered with the signature
// the header's TaskRefs promise, and runs in a worker.

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "plugins/text/text.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::MustTask;
using ::procpool::testing::Runfile;

TEST(TextPluginTest, EveryTaskRunsInAWorker) {
  PoolOptions opts;
  opts.max_workers = 2;
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
}

}  // namespace
}  // namespace procpool
