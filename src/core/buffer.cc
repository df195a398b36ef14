#include "core/buffer.h"

#include <algorithm>
#include <cstdlib>

namespace tandem {

BufferPool::~BufferPool() {
  for (char* c : free_) delete[] c;
}

char* BufferPool::get() {
  if (free_.empty()) return new char[kChunk];
  char* c = free_.back();
  free_.pop_back();
  return c;
}

void BufferPool::put(char* chunk) {
  if (free_.size() < max_cached_) {
    free_.push_back(chunk);
  } else {
    delete[] chunk;
  }
}

void Buffer::release() {
  if (!data_) return;
  if (cap_ == BufferPool::kChunk) {
    pool_->put(data_);
  } else {
    delete[] data_;
  }
  data_ = nullptr;
  cap_ = begin_ = end_ = 0;
}

char* Buffer::prepare(size_t min) {
  if (!data_) {
    if (min <= BufferPool::kChunk) {
      data_ = pool_->get();
      cap_ = BufferPool::kChunk;
    } else {
      data_ = new char[min];
      cap_ = min;
    }
    begin_ = end_ = 0;
    return data_;
  }
  if (cap_ - end_ >= min) return data_ + end_;
  // Compact first; grow only if compaction is not enough.
  size_t used = end_ - begin_;
  if (begin_ > 0 && cap_ - used >= min) {
    std::memmove(data_, data_ + begin_, used);
    begin_ = 0;
    end_ = used;
    return data_ + end_;
  }
  size_t ncap = std::max(cap_ * 2, used + min);
  char* n = new char[ncap];
  std::memcpy(n, data_ + begin_, used);
  size_t keep_end = used;
  release();
  data_ = n;
  cap_ = ncap;
  begin_ = 0;
  end_ = keep_end;
  return data_ + end_;
}

void Buffer::consume(size_t n) {
  begin_ += n;
  if (begin_ >= end_) begin_ = end_ = 0;
}

void Buffer::append(std::string_view s) {
  std::memcpy(prepare(s.size()), s.data(), s.size());
  commit(s.size());
}

}  // namespace tandem
