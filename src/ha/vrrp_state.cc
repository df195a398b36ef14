#include "ha/vrrp_state.h"

#include <fmt/format.h>

#include <cstdlib>

namespace tandem::ha {

const char* stateName(State state) {
  switch (state) {
    case State::kInit:
      return "init";
    case State::kBackup:
      return "backup";
    case State::kMaster:
      return "master";
    case State::kFault:
      return "fault";
  }
  return "unknown";
}

const char* reasonName(Reason reason) {
  switch (reason) {
    case Reason::kStartup:
      return "startup";
    case Reason::kOwner:
      return "owner";
    case Reason::kMasterDown:
      return "master_down";
    case Reason::kMasterStopped:
      return "master_stopped";
    case Reason::kPreempt:
      return "preempt";
    case Reason::kHigherPriority:
      return "higher_priority";
    case Reason::kShutdown:
      return "shutdown";
    case Reason::kFault:
      return "fault";
    case Reason::kFaultCleared:
      return "fault_cleared";
  }
  return "unknown";
}

std::string toString(const Action& action) {
  struct Visitor {
    std::string operator()(const SendAdvert& a) const {
      return fmt::format("send_advert priority {}", a.priority);
    }
    std::string operator()(const AddVips&) const { return "add_vips"; }
    std::string operator()(const RemoveVips&) const { return "remove_vips"; }
    std::string operator()(const SendGratuitousArp&) const { return "send_garp"; }
    std::string operator()(const Transition& t) const {
      return fmt::format("transition {}->{} ({})", stateName(t.from), stateName(t.to),
                         reasonName(t.reason));
    }
  };
  return std::visit(Visitor{}, action);
}

VrrpRouter::VrrpRouter(const VrrpConfig& config)
    : config_(config),
      priority_(config.priority),
      master_adver_interval_cs_(config.advert_interval_cs) {
  if (config.vrid == 0 || config.priority == 0 || config.advert_interval_cs == 0 ||
      config.advert_interval_cs > kVrrpMaxIntervalCs || config.preempt_delay_ms < 0) {
    std::abort();  // config validation rejects these
  }
}

// ---- Events ----

Actions VrrpRouter::startup(int64_t now_ms) {
  Actions out;
  if (state_ != State::kInit) return out;
  started_ms_ = now_ms;
  if (fault_) {
    initializeToFault(out);
  } else if (isOwner()) {
    initializeToMaster(now_ms, out);
  } else {
    initializeToBackup(now_ms, out);
  }
  return out;
}

Actions VrrpRouter::shutdown(int64_t /*now_ms*/) {
  Actions out;
  switch (state_) {
    case State::kInit:
      break;
    case State::kBackup:
      backupToInitialize(out);
      break;
    case State::kMaster:
      masterToInitialize(out);
      break;
    case State::kFault:
      faultToInitialize(out);
      break;
  }
  return out;
}

Actions VrrpRouter::receive(int64_t now_ms, const Advert& advert, uint32_t src_ip) {
  Actions out;
  // §7.1: only our VRID; our own multicast comes back to us through the loopback.
  if (advert.vrid != config_.vrid || src_ip == config_.own_ip) return out;
  if (state_ == State::kBackup) {
    receiveAsBackup(now_ms, advert, src_ip, out);
  } else if (state_ == State::kMaster) {
    receiveAsMaster(now_ms, advert, src_ip, out);
  }
  return out;  // Initialize and Fault ignore adverts
}

Actions VrrpRouter::tick(int64_t now_ms) {
  Actions out;
  if (state_ == State::kMaster && adver_timer_ms_ && now_ms >= *adver_timer_ms_) {
    // §6.4.3 Adver_Timer fires. Keep the schedule (no drift from late ticks) unless a whole
    // interval was missed; then restart from now rather than send a burst.
    out.emplace_back(SendAdvert{priority_});
    const int64_t interval_ms = int64_t{config_.advert_interval_cs} * 10;
    *adver_timer_ms_ += interval_ms;
    if (*adver_timer_ms_ <= now_ms) adver_timer_ms_ = now_ms + interval_ms;
  }
  if (state_ == State::kBackup && master_down_timer_ms_ && now_ms >= *master_down_timer_ms_) {
    // §6.4.2 Master_Down_Timer fires.
    const Reason reason = last_advert_ == LastAdvert::kStopped     ? Reason::kMasterStopped
                          : last_advert_ == LastAdvert::kDiscarded ? Reason::kPreempt
                                                                   : Reason::kMasterDown;
    backupToMaster(now_ms, reason, out);
  }
  return out;
}

Actions VrrpRouter::setFault(bool fault, int64_t now_ms) {
  Actions out;
  fault_ = fault;
  if (fault && state_ == State::kBackup) backupToFault(out);
  if (fault && state_ == State::kMaster) masterToFault(out);
  if (!fault && state_ == State::kFault) {
    if (isOwner()) {
      faultToMaster(now_ms, out);
    } else {
      faultToBackup(now_ms, out);
    }
  }
  return out;
}

Actions VrrpRouter::setPriority(uint8_t effective, int64_t now_ms) {
  Actions out;
  if (effective == 0) effective = 1;  // 0 on the wire means "stopping" (§5.2.4)
  if (effective == priority_) return out;
  priority_ = effective;
  // The running Master_Down_Timer keeps its deadline; the new Skew_Time applies from the next
  // advert. Only the owner preempts at once (§6.1 Preempt_Mode).
  if (state_ == State::kBackup && isOwner()) {
    backupToMaster(now_ms, Reason::kOwner, out);
  } else if (state_ == State::kMaster) {
    sendAdvert(now_ms, out);
  }
  return out;
}

std::optional<int64_t> VrrpRouter::nextDeadline() const {
  if (state_ == State::kMaster) return adver_timer_ms_;
  if (state_ == State::kBackup) return master_down_timer_ms_;
  return std::nullopt;
}

// ---- Receiving adverts ----

bool VrrpRouter::mayPreempt(int64_t now_ms) const {
  return config_.preempt && now_ms - started_ms_ >= config_.preempt_delay_ms;
}

void VrrpRouter::receiveAsBackup(int64_t now_ms, const Advert& advert, uint32_t src_ip,
                                 Actions& /*out*/) {
  if (advert.priority == 0) {
    // §6.4.2: the master is stopping; the backup with the shortest Skew_Time takes over first.
    master_down_timer_ms_ = now_ms + skewTimeMs();
    last_advert_ = LastAdvert::kStopped;
    return;
  }
  if (!mayPreempt(now_ms) || advert.priority >= priority_) {
    // §6.4.2: accept this master and learn its interval.
    master_adver_interval_cs_ = advert.interval_cs;
    master_down_timer_ms_ = now_ms + masterDownIntervalMs();
    last_advert_ = LastAdvert::kAccepted;
    master_ip_ = src_ip;
    return;
  }
  // §6.4.2: a lower-priority master while we may preempt: discard, let Master_Down_Timer run out.
  last_advert_ = LastAdvert::kDiscarded;
}

void VrrpRouter::receiveAsMaster(int64_t now_ms, const Advert& advert, uint32_t src_ip,
                                 Actions& out) {
  if (advert.priority == 0) {
    // §6.4.3: another router is stopping; assert ourselves at once.
    sendAdvert(now_ms, out);
    return;
  }
  const bool better =
      advert.priority > priority_ || (advert.priority == priority_ && src_ip > config_.own_ip);
  if (better && !isOwner()) {  // §7.1: the owner discards adverts
    masterToBackup(now_ms, advert, src_ip, out);
    return;
  }
  if (better) return;  // a second owner (misconfiguration): both stay master, as in keepalived
  // DEVIATION from §6.4.3 (discard): a worse master exists, e.g. across a healed partition. Make
  // it step down now and take the clients' ARP caches back (see the header).
  sendAdvert(now_ms, out);
  out.emplace_back(SendGratuitousArp{});
}

void VrrpRouter::sendAdvert(int64_t now_ms, Actions& out) {
  out.emplace_back(SendAdvert{priority_});
  adver_timer_ms_ = now_ms + int64_t{config_.advert_interval_cs} * 10;
}

// ---- Transitions ----

void VrrpRouter::change(State to, Reason reason, Actions& out) {
  out.emplace_back(Transition{state_, to, reason});
  state_ = to;
}

void VrrpRouter::enterBackup(int64_t now_ms, Actions& out) {
  // §6.4.1: Master_Adver_Interval starts as our own Advertisement_Interval.
  master_adver_interval_cs_ = config_.advert_interval_cs;
  master_down_timer_ms_ = now_ms + masterDownIntervalMs();
  adver_timer_ms_.reset();
  last_advert_ = LastAdvert::kNone;
  master_ip_ = 0;
  out.emplace_back(RemoveVips{});
}

void VrrpRouter::enterMaster(int64_t now_ms, Actions& out) {
  // §6.4.1/§6.4.2: send an advert, then gratuitous ARP for the VIPs (once they are up), and
  // set Adver_Timer.
  master_down_timer_ms_.reset();
  sendAdvert(now_ms, out);
  out.emplace_back(AddVips{});
  out.emplace_back(SendGratuitousArp{});
}

void VrrpRouter::initializeToBackup(int64_t now_ms, Actions& out) {
  change(State::kBackup, Reason::kStartup, out);
  enterBackup(now_ms, out);
}

void VrrpRouter::initializeToMaster(int64_t now_ms, Actions& out) {
  change(State::kMaster, Reason::kOwner, out);
  enterMaster(now_ms, out);
}

void VrrpRouter::initializeToFault(Actions& out) {
  change(State::kFault, Reason::kFault, out);
  out.emplace_back(RemoveVips{});
}

void VrrpRouter::backupToMaster(int64_t now_ms, Reason reason, Actions& out) {
  change(State::kMaster, reason, out);
  enterMaster(now_ms, out);
}

void VrrpRouter::backupToInitialize(Actions& out) {
  // §6.4.2: cancel Master_Down_Timer. The VIPs are not ours; nothing to remove or send.
  master_down_timer_ms_.reset();
  change(State::kInit, Reason::kShutdown, out);
}

void VrrpRouter::backupToFault(Actions& out) {
  master_down_timer_ms_.reset();
  change(State::kFault, Reason::kFault, out);
  out.emplace_back(RemoveVips{});
}

void VrrpRouter::masterToBackup(int64_t now_ms, const Advert& advert, uint32_t src_ip,
                                Actions& out) {
  // §6.4.3: cancel Adver_Timer, learn the new master's interval, start Master_Down_Timer.
  change(State::kBackup, Reason::kHigherPriority, out);
  adver_timer_ms_.reset();
  master_adver_interval_cs_ = advert.interval_cs;
  master_down_timer_ms_ = now_ms + masterDownIntervalMs();
  last_advert_ = LastAdvert::kAccepted;
  master_ip_ = src_ip;
  out.emplace_back(RemoveVips{});
  // DEVIATION (see the header): a parting advert, so that the new master hears that we held the
  // VIPs and re-sends gratuitous ARP. We are Backup now: this is the only advert we send.
  out.emplace_back(SendAdvert{priority_});
}

void VrrpRouter::masterToInitialize(Actions& out) {
  // §6.4.3: cancel Adver_Timer and send priority 0 so a backup takes over after Skew_Time; the
  // VIPs go right after (keepalived does the same, FACTS.md).
  adver_timer_ms_.reset();
  change(State::kInit, Reason::kShutdown, out);
  out.emplace_back(SendAdvert{0});
  out.emplace_back(RemoveVips{});
}

void VrrpRouter::masterToFault(Actions& out) {
  // Nothing is sent: the interface may be down, and a node in fault must not speak for the VRID.
  adver_timer_ms_.reset();
  change(State::kFault, Reason::kFault, out);
  out.emplace_back(RemoveVips{});
}

void VrrpRouter::faultToBackup(int64_t now_ms, Actions& out) {
  started_ms_ = now_ms;  // preempt_delay runs again: we are back from the network's view
  change(State::kBackup, Reason::kFaultCleared, out);
  enterBackup(now_ms, out);
}

void VrrpRouter::faultToMaster(int64_t now_ms, Actions& out) {
  started_ms_ = now_ms;
  change(State::kMaster, Reason::kFaultCleared, out);
  enterMaster(now_ms, out);
}

void VrrpRouter::faultToInitialize(Actions& out) { change(State::kInit, Reason::kShutdown, out); }

}  // namespace tandem::ha
