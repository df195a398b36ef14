#include <gtest/gtest.h>

#include <string>

#include "balance/balancer.h"

namespace tandem::balance {
namespace {

// hash64 is XXH64. These are the reference implementation's outputs (the first three are the
// published test vectors); they are regression values as well: consistent hashing across a
// cluster relies on hash64 never changing.
TEST(Hash64, MatchesXxh64ReferenceValues) {
  EXPECT_EQ(hash64(""), 0xef46db3751d8e999ULL);
  EXPECT_EQ(hash64("a"), 0xd24ec4f1a98c6e5bULL);
  EXPECT_EQ(hash64("abc"), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(hash64("198.18.0.1"), 0x6f431ed8f645d73fULL);
  // > 32 bytes: exercises the four-lane stripe loop.
  EXPECT_EQ(hash64("The quick brown fox jumps over the lazy dog"), 0x0b242d361fda71bcULL);
}

TEST(Hash64, SeedChangesValue) {
  EXPECT_EQ(hash64("", 1), 0xd5afba1336a3be4bULL);
  EXPECT_EQ(hash64("abc", 1), 0xbea9ca8199328908ULL);
  EXPECT_EQ(hash64("server-1-0", 1), 0x89b4cc3b65e32ecaULL);
  EXPECT_NE(hash64("abc", 1), hash64("abc", 2));
}

TEST(Hash64, DependsOnBytesNotStorage) {
  const std::string s = "xx198.18.0.1yy";
  EXPECT_EQ(hash64(std::string_view(s).substr(2, 10)), hash64("198.18.0.1"));
  // Embedded NUL bytes are data.
  EXPECT_NE(hash64(std::string_view("a\0b", 3)), hash64(std::string_view("a\0c", 3)));
}

}  // namespace
}  // namespace tandem::balance
