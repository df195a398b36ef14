#pragma once
// The VRRPv3 state machine of one virtual router (RFC 5798 §6.4), with no I/O: the ha thread feeds
// it time and events and performs the actions each call returns. Time is injected (milliseconds
// on any monotonic clock), so unit tests run it on simulated time. Not thread-safe: one owner.
//
// States are the RFC's Initialize, Backup and Master, plus an internal Fault (interface down, or
// tracking says this node must not serve). Each transition is one private function named after it.
//
// Behaviour, including where we knowingly differ from the RFC:
// - Timers: Skew_Time = ((256 − priority) × Master_Adver_Interval) / 256 and Master_Down_Interval
//   = 3 × Master_Adver_Interval + Skew_Time (§6.1), with the local effective priority. Computed in
//   milliseconds and rounded UP (the RFC's centiseconds would truncate 41.4 ms to 40): 361 ms at
//   priority 100 and 100 ms adverts, as keepalived's microsecond timers give (FACTS.md), and never
//   earlier than the exact value. A backup learns Master_Adver_Interval from each advert it accepts
//   (§6.4.2); it starts from its own Advertisement_Interval.
// - A backup receiving priority 0 (the master is stopping) sets Master_Down_Timer to Skew_Time
//   (§6.4.2), so a graceful stop fails over in about Skew_Time, the highest-priority backup first.
// - A master receiving a higher priority, or an equal priority from a higher primary address,
//   becomes Backup and removes the VIPs (§6.4.3). An address owner (priority 255) never steps down
//   (§7.1 has it discard adverts).
// - DEVIATION: a master receiving a LOWER priority (or equal priority from a lower address) does
//   not just discard it (§6.4.3): that peer also believes it is master, e.g. after a partition
//   heals. We answer at once with our own advert, so the peer steps down within one round trip, and
//   re-send gratuitous ARP, because clients may have learnt the other MAC while it held the VIPs
//   (keepalived stays silent and a healed partition took 43 s to recover, FACTS.md). Every such
//   advert is answered; bursts are for the ARP sender to coalesce.
// - DEVIATION: for the same reason a master that steps down sends one last advert with its own
//   priority after removing the VIPs. Otherwise, when the better master's advert arrives first,
//   the step-down is silent, the better master never learns that clients were sent elsewhere, and
//   no gratuitous ARP fixes them. To every other router it is an ordinary advert: an RFC master
//   above it discards it, a backup accepts or discards it as usual.
// - A master receiving priority 0 sends an advert at once (§6.4.3).
// - Preempt off: a backup accepts adverts of any priority, so it never takes over from a live
//   master, even a lower one (§6.4.2). Preempt on: adverts below our priority are discarded and
//   Master_Down_Timer takes us over. preempt_delay_ms: for that long after startup (and after
//   leaving Fault, which is a restart as far as the network is concerned) we behave as with
//   preempt off, so a node that just came up does not take over before it is ready. The owner
//   (255) always preempts: it goes Master at startup and when tracking raises it to 255.
// - Fault: removes the VIPs, sends nothing, ignores adverts, runs no timer. Leaving Fault is a
//   fresh start: Backup with Master_Down_Timer = Master_Down_Interval, or Master if owner.
// - RemoveVips is emitted on every entry to Backup or Fault (also from Initialize): removing absent
//   VIPs is harmless, and so a restart after kill -9 drops stale VIPs (DESIGN §6, VIP hygiene).
// - Adverts with another VRID, or from our own address (multicast loopback), are ignored.
// - A master sends an advert at once when its effective priority changes, so peers see it now.
//
// Actions returned by a call are to be performed in order. A state change starts with its
// Transition action, followed by the effects of entering the new state.
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ha/vrrp_packet.h"

namespace tandem::ha {

enum class State { kInit, kBackup, kMaster, kFault };
const char* stateName(State state);  // "init", "backup", "master", "fault"

// Why a transition happened (for logs, events and metrics).
enum class Reason {
  kStartup,         // Initialize -> Backup (§6.4.1)
  kOwner,           // -> Master at once: priority 255 (§6.4.1)
  kMasterDown,      // Backup -> Master: no advert for Master_Down_Interval (§6.4.2)
  kMasterStopped,   // Backup -> Master: Skew_Time after a priority-0 advert (§6.4.2)
  kPreempt,         // Backup -> Master: the timer ran out while we discarded lower adverts
  kHigherPriority,  // Master -> Backup: a better master advertised (§6.4.3)
  kShutdown,        // -> Initialize (§6.4.2, §6.4.3)
  kFault,           // -> Fault
  kFaultCleared,    // Fault -> Backup or Master
};
const char* reasonName(Reason reason);  // "startup", "owner", "master_down", ...

struct VrrpConfig {
  uint8_t vrid = 1;                   // 1..255
  uint8_t priority = 100;             // 1..254, or 255 for the address owner; never 0
  uint16_t advert_interval_cs = 100;  // Advertisement_Interval, 1..4095 centiseconds
  bool preempt = true;
  int64_t preempt_delay_ms = 0;
  uint32_t own_ip = 0;  // primary IPv4 address, host byte order: the tie-breaker (§6.4.3)
};

// Actions. The ha thread fills in what the state machine does not know (interface, VIP list,
// destination: multicast or unicast peers).
struct SendAdvert {  // one advert with our VRID, Advertisement_Interval, VIPs, and this priority
  uint8_t priority = 0;
  bool operator==(const SendAdvert&) const = default;
};
struct AddVips {
  bool operator==(const AddVips&) const = default;
};
struct RemoveVips {
  bool operator==(const RemoveVips&) const = default;
};
struct SendGratuitousArp {  // one burst for every VIP (the ha thread schedules any repeats)
  bool operator==(const SendGratuitousArp&) const = default;
};
struct Transition {
  State from = State::kInit;
  State to = State::kInit;
  Reason reason = Reason::kStartup;
  bool operator==(const Transition&) const = default;
};
using Action = std::variant<SendAdvert, AddVips, RemoveVips, SendGratuitousArp, Transition>;
using Actions = std::vector<Action>;

std::string toString(const Action& action);  // e.g. "transition backup->master (master_down)"

// Timer arithmetic of §6.1 in milliseconds, rounded up (see above).
constexpr int64_t skewTimeMs(uint8_t priority, uint16_t master_adver_interval_cs) {
  return ((256 - int64_t{priority}) * master_adver_interval_cs * 10 + 255) / 256;
}
constexpr int64_t masterDownIntervalMs(uint8_t priority, uint16_t master_adver_interval_cs) {
  return 3 * int64_t{master_adver_interval_cs} * 10 +
         skewTimeMs(priority, master_adver_interval_cs);
}

class VrrpRouter {
 public:
  // Aborts on a config outside the ranges above (validated before it gets here).
  explicit VrrpRouter(const VrrpConfig& config);

  // Startup event (§6.4.1): Initialize -> Backup, or Master for the owner, or Fault if a fault is
  // already set. Ignored unless in Initialize.
  Actions startup(int64_t now_ms);
  // Shutdown event: -> Initialize from any state; a master sends priority 0 and removes the VIPs
  // (§6.4.3). Ignored in Initialize.
  Actions shutdown(int64_t now_ms);
  // An advert that passed decode(), received from src_ip (the IPv4 source, host byte order).
  Actions receive(int64_t now_ms, const Advert& advert, uint32_t src_ip);
  // Fires due timers: Adver_Timer (master) and Master_Down_Timer (backup). Call it at
  // nextDeadline() or later; calling it early or often is harmless.
  Actions tick(int64_t now_ms);
  // Interface or tracking state. A fault set while in Initialize applies at startup.
  Actions setFault(bool fault, int64_t now_ms);
  // Effective priority from tracking (configured priority plus weights, clamped by the caller to
  // 1..254; 255 only for an owner). 0 is treated as 1: only a stopping master advertises 0.
  Actions setPriority(uint8_t effective, int64_t now_ms);

  State state() const { return state_; }
  uint8_t priority() const { return priority_; }  // effective
  uint16_t masterAdverIntervalCs() const { return master_adver_interval_cs_; }
  int64_t skewTimeMs() const { return ha::skewTimeMs(priority_, master_adver_interval_cs_); }
  int64_t masterDownIntervalMs() const {
    return ha::masterDownIntervalMs(priority_, master_adver_interval_cs_);
  }
  // When tick() next has work to do; nullopt when no timer runs (Initialize, Fault).
  std::optional<int64_t> nextDeadline() const;
  // The address of the master whose adverts we last accepted (0: none yet); ours when Master.
  uint32_t masterIp() const { return state_ == State::kMaster ? config_.own_ip : master_ip_; }

 private:
  // What a backup last did with an advert, to name the reason when its timer fires.
  enum class LastAdvert { kNone, kAccepted, kStopped, kDiscarded };

  // One function per transition (§6.4.1-§6.4.3, plus Fault).
  void initializeToBackup(int64_t now_ms, Actions& out);
  void initializeToMaster(int64_t now_ms, Actions& out);
  void initializeToFault(Actions& out);
  void backupToMaster(int64_t now_ms, Reason reason, Actions& out);
  void backupToInitialize(Actions& out);
  void backupToFault(Actions& out);
  void masterToBackup(int64_t now_ms, const Advert& advert, uint32_t src_ip, Actions& out);
  void masterToInitialize(Actions& out);
  void masterToFault(Actions& out);
  void faultToBackup(int64_t now_ms, Actions& out);
  void faultToMaster(int64_t now_ms, Actions& out);
  void faultToInitialize(Actions& out);

  // Shared entry effects.
  void enterBackup(int64_t now_ms, Actions& out);
  void enterMaster(int64_t now_ms, Actions& out);
  void change(State to, Reason reason, Actions& out);

  void receiveAsBackup(int64_t now_ms, const Advert& advert, uint32_t src_ip, Actions& out);
  void receiveAsMaster(int64_t now_ms, const Advert& advert, uint32_t src_ip, Actions& out);
  void sendAdvert(int64_t now_ms, Actions& out);
  bool isOwner() const { return priority_ == 255; }
  bool mayPreempt(int64_t now_ms) const;

  VrrpConfig config_;
  State state_ = State::kInit;
  uint8_t priority_;
  bool fault_ = false;
  uint16_t master_adver_interval_cs_;
  std::optional<int64_t> adver_timer_ms_;        // Master: next advert due
  std::optional<int64_t> master_down_timer_ms_;  // Backup: the master is deemed down
  int64_t started_ms_ = 0;                       // startup or leaving Fault (preempt_delay)
  LastAdvert last_advert_ = LastAdvert::kNone;
  uint32_t master_ip_ = 0;
};

}  // namespace tandem::ha
