#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "plugins/math/math.h"
#include "pool/pool.h"
#include "pool/runfiles.h"

namespace procpool {
namespace {

TEST(SmokeTest, AddRoundTrip) {
  PoolOptions opts;
  opts.max_workers = 2;
  opts.plugins = {*FindRunfile("plugins/math/libmath.so")};
  auto pool = ProcessPool::Create(opts);
  ASSERT_TRUE(pool.ok()) << pool.status();
  auto add = pool->Task(math::kAdd);
  ASSERT_TRUE(add.ok()) << add.status();
  EXPECT_EQ(pool->Submit(*add, 1, 2).Get(absl::Seconds(10)), 3);
  std::vector<int> xs = {1, 2, 3, 4}, ys = {10, 20, 30};
  std::vector<int> out;
  for (int r : pool->Map(*add, xs, ys)) out.push_back(r);
  EXPECT_EQ(out, (std::vector<int>{11, 22, 33}));
  auto bad = pool->Task<double(int, int)>("add");
  EXPECT_FALSE(bad.ok());
  std::cerr << bad.status() << "\n";
  auto unk = pool->Task<double(int, int)>("nope");
  std::cerr << unk.status() << "\n";
}

}  // namespace
}  // namespace procpool
