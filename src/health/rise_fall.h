#pragma once
// Active-check verdict of one server: `rise` consecutive successes bring a down server up, `fall`
// consecutive failures bring an up server down (HAProxy's model). Pure logic, no time.
#include <cstdint>

namespace tandem::health {

class RiseFall {
 public:
  RiseFall(uint32_t rise, uint32_t fall, bool initially_up)
      : rise_(rise ? rise : 1), fall_(fall ? fall : 1), up_(initially_up) {}

  // Records one probe result; returns true if the verdict flipped.
  bool record(bool success) {
    if (success == up_) {
      streak_ = 0;  // agrees with the verdict
      return false;
    }
    if (++streak_ < (up_ ? fall_ : rise_)) return false;
    up_ = !up_;
    streak_ = 0;
    return true;
  }
  bool up() const { return up_; }
  // A streak towards a flip is under way (probe faster to decide sooner).
  bool changing() const { return streak_ > 0; }
  // Forces a verdict (admin action, or a passive ejection ending) and clears the streak.
  void set(bool up) {
    up_ = up;
    streak_ = 0;
  }

 private:
  uint32_t rise_;
  uint32_t fall_;
  bool up_;
  uint32_t streak_ = 0;
};

}  // namespace tandem::health
