#include "core/buffer.h"

#include <gtest/gtest.h>

#include <string>

namespace tandem {
namespace {

TEST(Buffer, HoldsNoMemoryUntilUsedAndReturnsItWhenEmpty) {
  BufferPool pool;
  Buffer b(pool);
  EXPECT_EQ(b.capacity(), 0u);
  b.append("hello");
  EXPECT_EQ(b.capacity(), BufferPool::kChunk);
  EXPECT_EQ(b.view(), "hello");
  b.consume(5);
  EXPECT_TRUE(b.empty());
  b.releaseIfEmpty();
  EXPECT_EQ(b.capacity(), 0u);
}

TEST(Buffer, ReusesPooledChunks) {
  BufferPool pool;
  Buffer a(pool);
  a.append("x");
  const char* first = a.data();
  a.clear();
  Buffer b(pool);
  b.append("y");
  EXPECT_EQ(b.data(), first);
}

TEST(Buffer, CompactsBeforeGrowingAndGrowsPastAChunk) {
  BufferPool pool;
  Buffer b(pool);
  std::string big(BufferPool::kChunk - 10, 'a');
  b.append(big);
  b.consume(big.size() - 4);  // 4 bytes left near the end
  b.append(std::string(100, 'b'));
  EXPECT_EQ(b.capacity(), BufferPool::kChunk);  // compacted, not grown
  EXPECT_EQ(b.size(), 104u);
  EXPECT_EQ(b.view().substr(0, 4), "aaaa");
  b.append(std::string(BufferPool::kChunk, 'c'));
  EXPECT_GT(b.capacity(), BufferPool::kChunk);
  EXPECT_EQ(b.size(), 104u + BufferPool::kChunk);
  EXPECT_EQ(b.view().back(), 'c');
}

}  // namespace
}  // namespace tandem
