#pragma once
// Byte buffer for socket I/O. Storage is taken from a per-worker BufferPool only while the buffer
// holds data, so an idle keep-alive connection owns no buffer memory (10k idle connections must
// stay within a few MiB).
#include <cstddef>
#include <cstring>
#include <string_view>
#include <vector>

namespace tandem {

class BufferPool {
 public:
  static constexpr size_t kChunk = 32 * 1024;
  explicit BufferPool(size_t max_cached = 1024) : max_cached_(max_cached) {}
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  char* get();
  void put(char* chunk);

 private:
  std::vector<char*> free_;
  size_t max_cached_;
};

class Buffer {
 public:
  explicit Buffer(BufferPool& pool) : pool_(&pool) {}
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const char* data() const { return data_ + begin_; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::string_view view() const { return {data(), size()}; }
  size_t capacity() const { return cap_; }

  // Writable tail of at least `min` bytes (grows past the pool chunk size only if asked to).
  char* prepare(size_t min = 1);
  size_t writable() const { return cap_ - end_; }
  void commit(size_t n) { end_ += n; }
  void consume(size_t n);
  void append(std::string_view s);
  // Returns storage to the pool when empty (call when a connection goes idle).
  void releaseIfEmpty() {
    if (empty()) release();
  }
  void clear() {
    begin_ = end_ = 0;
    release();
  }

 private:
  void release();
  BufferPool* pool_;
  char* data_ = nullptr;
  size_t cap_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace tandem
