#include "state/table.h"

#include <algorithm>

namespace tandem::state {

namespace {

bool live(const Record& r, int64_t now_ms) { return r.expires_ms == 0 || r.expires_ms > now_ms; }

int64_t expiryOf(int64_t ttl_ms, int64_t now_us) { return ttl_ms > 0 ? now_us / 1000 + ttl_ms : 0; }

// Counter merge: each node's count is the larger of the two (counts only grow).
bool mergeCounts(std::vector<std::pair<std::string, uint64_t>>& into,
                 const std::vector<std::pair<std::string, uint64_t>>& from) {
  bool changed = false;
  for (const auto& [node, count] : from) {
    auto it = std::lower_bound(into.begin(), into.end(), node,
                               [](const auto& c, const std::string& n) { return c.first < n; });
    if (it != into.end() && it->first == node) {
      if (count > it->second) {
        it->second = count;
        changed = true;
      }
    } else {
      into.insert(it, {node, count});
      changed = true;
    }
  }
  return changed;
}

}  // namespace

Table::Table(Options options)
    : node_id_(std::move(options.node_id)),
      max_per_shard_(std::max<size_t>(1, options.max_entries / kShards)),
      max_dirty_(std::max<size_t>(1, options.max_dirty)) {}

std::string Table::mapKey(Kind kind, std::string_view key) {
  std::string mk;
  mk.reserve(key.size() + 1);
  mk.push_back(static_cast<char>(kind));
  mk.append(key);
  return mk;
}

Table::Shard& Table::shardOf(const std::string& map_key) const {
  return shards_[std::hash<std::string>{}(map_key) % kShards];
}

Table::Entry& Table::slot(Shard& s, const std::string& mk, bool& created) {
  auto it = s.map.find(mk);
  created = it == s.map.end();
  if (!created) return it->second;
  if (s.map.size() >= max_per_shard_) {
    // Full: an arbitrary victim (bounded memory matters more than which entry goes; expired
    // entries are swept every second, so in practice this only runs under a key flood).
    auto victim = s.map.begin();
    if (victim->second.dirty) {
      std::erase(s.dirty, victim->first);
      dirty_count_.fetch_sub(1, std::memory_order_relaxed);
    }
    s.map.erase(victim);
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  return s.map[mk];
}

void Table::markDirty(Shard& s, const std::string& mk, Entry& e) {
  local_writes_.fetch_add(1, std::memory_order_relaxed);
  if (e.dirty) return;
  if (dirty_count_.load(std::memory_order_relaxed) >= max_dirty_) {
    overflowed_.store(true, std::memory_order_relaxed);  // the next drain asks for a full sync
    return;
  }
  e.dirty = true;
  s.dirty.push_back(mk);
  if (dirty_count_.fetch_add(1, std::memory_order_acq_rel) == 0 && wake_) wake_();
}

std::optional<std::string> Table::get(Kind kind, std::string_view key, int64_t now_ms) const {
  const std::string mk = mapKey(kind, key);
  Shard& s = shardOf(mk);
  std::lock_guard lock(s.mu);
  auto it = s.map.find(mk);
  if (it == s.map.end() || !live(it->second.rec, now_ms)) return std::nullopt;
  return it->second.rec.value;
}

void Table::put(Kind kind, std::string_view key, std::string_view value, int64_t ttl_ms,
                int64_t now_us) {
  touch(kind, key, value, ttl_ms, now_us);
}

template <class Write>
bool Table::writeLocal(Kind kind, std::string_view key, Write&& write) {
  const std::string mk = mapKey(kind, key);
  Shard& s = shardOf(mk);
  std::lock_guard lock(s.mu);
  bool created = false;
  Entry& e = slot(s, mk, created);
  Record& r = e.rec;
  if (created) {
    r.kind = kind;
    r.key.assign(key);
  }
  if (!write(r, created)) return false;
  markDirty(s, mk, e);
  return true;
}

bool Table::touch(Kind kind, std::string_view key, std::string_view value, int64_t ttl_ms,
                  int64_t now_us) {
  return writeLocal(kind, key, [&](Record& r, bool created) {
    const int64_t expires = expiryOf(ttl_ms, now_us);
    if (!created && live(r, now_us / 1000) && r.value == value &&
        (expires == 0 ? r.expires_ms == 0 : r.expires_ms - now_us / 1000 > ttl_ms / 2)) {
      return false;  // same value, still fresh: nothing to tell the others
    }
    r.origin = node_id_;
    r.version = std::max<uint64_t>(static_cast<uint64_t>(now_us), r.version + 1);
    r.expires_ms = expires;
    r.written_us = now_us;
    r.value.assign(value);
    return true;
  });
}

uint64_t Table::add(Kind kind, std::string_view key, uint64_t delta, int64_t ttl_ms,
                    int64_t now_us) {
  uint64_t sum = 0;
  writeLocal(kind, key, [&](Record& r, bool created) {
    bool fresh = created;
    if (!created && !live(r, now_us / 1000)) {
      // Expired but not swept yet: counting on would resurrect the old counts.
      r.counts.clear();
      fresh = true;
    }
    auto it = std::lower_bound(r.counts.begin(), r.counts.end(), node_id_,
                               [](const auto& c, const std::string& n) { return c.first < n; });
    if (it == r.counts.end() || it->first != node_id_) it = r.counts.insert(it, {node_id_, 0});
    it->second += delta;
    // The later deadline wins, and 0 (never) outlives any, as in merge().
    const int64_t want = expiryOf(ttl_ms, now_us);
    if (fresh) {
      r.expires_ms = want;
    } else if (r.expires_ms != 0) {
      r.expires_ms = want == 0 ? 0 : std::max(r.expires_ms, want);
    }
    r.written_us = now_us;
    sum = state::total(r);
    return true;
  });
  return sum;
}

uint64_t Table::total(Kind kind, std::string_view key, int64_t now_ms) const {
  const std::string mk = mapKey(kind, key);
  Shard& s = shardOf(mk);
  std::lock_guard lock(s.mu);
  auto it = s.map.find(mk);
  if (it == s.map.end() || !live(it->second.rec, now_ms)) return 0;
  return state::total(it->second.rec);
}

bool Table::merge(const Record& in, int64_t now_ms) {
  if (!live(in, now_ms) || static_cast<uint8_t>(in.kind) == 0 ||
      static_cast<uint8_t>(in.kind) > kMaxKind) {
    stale_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const std::string mk = mapKey(in.kind, in.key);
  Shard& s = shardOf(mk);
  bool changed = false;
  {
    std::lock_guard lock(s.mu);
    bool created = false;
    Entry& e = slot(s, mk, created);
    Record& r = e.rec;
    if (created || !live(r, now_ms)) {
      const bool dirty = e.dirty;
      r = in;
      if (isCounter(in.kind)) {  // keep counts sorted and unique whatever the sender did
        r.counts.clear();
        mergeCounts(r.counts, in.counts);
      }
      e.dirty = dirty;
      changed = true;
    } else if (isCounter(in.kind)) {
      changed = mergeCounts(r.counts, in.counts);
      if (in.expires_ms == 0 || (r.expires_ms != 0 && in.expires_ms > r.expires_ms)) {
        r.expires_ms = in.expires_ms;
      }
    } else if (wins(in, r)) {
      r = in;
      changed = true;
    }
  }
  (changed ? merged_ : stale_).fetch_add(1, std::memory_order_relaxed);
  if (changed && on_merge_) on_merge_(in);
  return changed;
}

bool Table::drain(std::vector<Record>& out, size_t max) {
  // A write that lands in a shard this pass has already visited finds the count above zero and
  // wakes nobody: pass again until the count is seen at zero (any later write then wakes the
  // replicator) or `out` is full (the caller calls again).
  do {
    for (Shard& s : shards_) {
      if (out.size() >= max) break;
      std::lock_guard lock(s.mu);
      size_t taken = 0;
      for (; taken < s.dirty.size() && out.size() < max; ++taken) {
        auto it = s.map.find(s.dirty[taken]);
        if (it == s.map.end()) continue;
        it->second.dirty = false;
        out.push_back(it->second.rec);
      }
      s.dirty.erase(s.dirty.begin(), s.dirty.begin() + static_cast<std::ptrdiff_t>(taken));
      dirty_count_.fetch_sub(taken, std::memory_order_acq_rel);
    }
  } while (out.size() < max && dirty_count_.load(std::memory_order_acquire) > 0);
  // Checked last: an overflow during this drain is reported now, not at the next write's wake.
  const bool lost = overflowed_.exchange(false, std::memory_order_relaxed);
  if (lost) overflows_.fetch_add(1, std::memory_order_relaxed);
  return !lost;
}

void Table::forEach(const std::function<void(const Record&)>& fn, int64_t now_ms) const {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [mk, e] : s.map) {
      if (live(e.rec, now_ms)) fn(e.rec);
    }
  }
}

size_t Table::expire(int64_t now_ms) {
  size_t n = 0;
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto it = s.map.begin(); it != s.map.end();) {
      if (live(it->second.rec, now_ms)) {
        ++it;
        continue;
      }
      if (it->second.dirty) {
        std::erase(s.dirty, it->first);
        dirty_count_.fetch_sub(1, std::memory_order_relaxed);
      }
      it = s.map.erase(it);
      ++n;
    }
  }
  expired_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

Table::Stats Table::stats() const {
  Stats st;
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    st.entries += s.map.size();
  }
  st.local_writes = local_writes_.load(std::memory_order_relaxed);
  st.merged = merged_.load(std::memory_order_relaxed);
  st.stale = stale_.load(std::memory_order_relaxed);
  st.dirty_overflows = overflows_.load(std::memory_order_relaxed);
  st.evictions = evictions_.load(std::memory_order_relaxed);
  st.expired = expired_.load(std::memory_order_relaxed);
  return st;
}

}  // namespace tandem::state
