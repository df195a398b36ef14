#pragma once
// One client connection on a worker: the HTTP/1.1 exchange loop (head -> upstream -> response,
// repeated for keep-alive and pipelined requests) and the byte tunnel used by TCP listeners and by
// HTTP Upgrade after a 101.
//
// Everything is driven from drive(), which makes all progress the current readiness flags allow;
// the epoll callbacks only record readiness (edge-triggered) and call drive(). Bodies are streamed:
// bytes are validated by a framer (Content-Length or chunked) and written straight from the buffer
// they were read into, never buffered whole.
#include <cstdint>
#include <memory>
#include <string>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/socket.h"
#include "core/tls.h"
#include "http/parser.h"
#include "proxy/splice_pipe.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace tandem::proxy {

// Knows where the body of one message ends (Content-Length count-down or chunked decoding).
struct BodyFramer {
  http::BodyKind kind = http::BodyKind::kNone;
  uint64_t remaining = 0;
  http::ChunkedDecoder chunked;
  bool done = true;
  bool error = false;

  void start(http::BodyKind k, uint64_t content_length);
  // How many bytes at the front of `avail` belong to the body.
  size_t admit(std::string_view avail);
};

class Session final : public IoHandler, public TimerHandler, public UpstreamOwner, public Deferred {
 public:
  Session(Worker& w, Generation& gen, ListenerShared& ls, int fd, const SockAddr& peer);
  ~Session() override;

  void start();
  void onIo(uint32_t events) override;
  void onTimer(int tag) override;
  void onUpstreamIo(uint32_t events) override;
  // Worker is draining: an idle keep-alive connection closes now, a busy one after its response.
  void drainNow();

  size_t worker_index = 0;  // position in the worker's session list

 private:
  // kHandshake: TLS listeners only, before anything else (nothing reaches a backend before it).
  enum class Phase : uint8_t { kHandshake, kHead, kExchange, kTunnel, kClosing, kClosed };
  enum TimerTag { kClientTimer = 1, kUpstreamTimer = 2 };
  // kRate: during an exchange, the min_rate check (limits.min_rate, one period per tick).
  enum class ClientTimer : uint8_t { kNone, kHeader, kIdle, kLinger, kRate };

  void drive();
  bool stepHandshake();
  bool stepHead();
  bool stepExchange();
  bool stepTunnel();
  bool stepSplicedTunnel();
  bool endTunnelStep(bool to_backend_empty, bool to_client_empty, bool progress);
  bool stepClosing();

  void startRequest();
  bool connectUpstream();  // picks a server and attaches a connection; false if none can be had
  void resolveSticky(const http::RequestHead& req);
  void noteSticky(int server);  // the request goes to `server`: the entry/cookie follows it
  // rate_limit: counts the request; false (and a 429 sent) if over the limit.
  bool admitRate(const http::RequestHead& req);
  bool checkConnected();  // true if progress; handles connect failure
  void onConnectFailed();
  void onUpstreamBroken();  // reset/EOF/EPIPE before the response completed
  bool pumpRequest();
  bool pumpResponse();
  bool flushClient(bool with_body);
  void finishExchange();
  void resetExchange();
  void detachUpstream(bool reusable);

  enum class TryFailure : uint8_t { kReset, kStatus, kTimeout };
  // Starts another try on a different server if the policy, the budget and the request allow;
  // false leaves the failure to the caller, true means the request is taken care of.
  bool retry(TryFailure why);
  bool replayable() const;
  bool retriableStatus(int status) const;
  void armUpstreamTimer();  // per-try timeout until the response head, then limits.timeout
  void releasePending();
  void endRequestAccounting();

  // Request accounting (metrics, access log): opened when a request head is complete (or a
  // malformed one is answered), ended exactly once with the status the client got (0 = none).
  void openRequest();
  void moveToCurrent();  // between requests: onto the worker's current generation
  void endRequest(int status);
  void countToBackend(uint64_t n);    // request bytes written to the server
  void countFromBackend(uint64_t n);  // response bytes read from the server

  // Generated response (`page`, or the canned one for `status`), then lingering close.
  void respond(int status, std::string_view page = {});
  void closeNow();
  void armClient(ClientTimer kind);
  int readClient();  // >0 bytes, 0 EOF, -1 would block / error (sets flags)
  // Client writes and half-close, through TLS when the listener has it.
  ssize_t writeClient(std::string_view a, std::string_view b);
  void shutdownClient();
  // min_rate: is this exchange waiting on the client (body owed, or response bytes not taken)?
  bool waitingOnClient() const;
  void checkRate();  // on the kRate tick: cut a client that stayed under min_rate for a period

  Worker& w_;
  Generation* gen_;  // pinned: the config this connection runs on (see moveToCurrent)
  ListenerShared* ls_;
  const config::Listener* cfg_;
  BackendRt* be_;
  int fd_;
  std::string client_ip_;
  SockAddr peer_;
  Buffer in_;   // bytes from the client
  Buffer out_;  // bytes we generate for the client (response heads, error pages)
  Timer client_timer_;
  Timer up_timer_;
  Phase phase_ = Phase::kHead;
  ClientTimer client_timer_kind_ = ClientTimer::kNone;
  bool c_readable_ = false;
  bool c_writable_ = true;
  bool c_eof_ = false;
  bool c_hup_ = false;   // the client sent FIN (or the socket failed)
  bool c_shut_ = false;  // we shut down our write side to the client

  bool rate_bound_ = false;  // min_rate: the exchange waited on the client at the last tick
  uint64_t c_moved_ = 0;     // bytes read from + written to the client (min_rate)
  uint64_t rate_mark_ = 0;   // c_moved_ at the last tick

  bool tcp_ = false;
  bool splice_tried_ = false;
  std::unique_ptr<tls::Conn> tls_;  // null on plain listeners: one pointer test on their path
  SpliceLane c2u_;                  // TCP mode: client -> backend in the kernel
  SpliceLane u2c_;                  // TCP mode: backend -> client

  // Current exchange.
  http::ParseState req_state_;
  http::ParseState resp_state_;
  UpstreamConn* up_ = nullptr;
  int server_ = -1;
  PickExclusions tried_;
  uint64_t hash_ = 0;
  // Sticky sessions: the server the request's cookie or table entry names (-1: none), whether the
  // request carried a valid cookie for it, the table key, and the Set-Cookie for the response.
  int sticky_server_ = -1;
  bool sticky_cookie_ok_ = false;
  std::string sticky_key_;
  std::string_view set_cookie_;
  int attempts_ = 0;      // connection attempts for this request (all causes)
  uint32_t retries_ = 0;  // policy retries used
  bool budget_held_ = false;
  bool replayed_ = false;         // the reused-connection race replay was used
  bool abandon_request_ = false;  // the backend answered before taking our whole head
  bool pending_held_ = false;     // counted in the backend's pending connects
  bool active_counted_ = false;   // counted in the backend's active requests
  Buffer up_out_;  // rewritten request head for the backend (kept until a response byte)
  size_t up_out_sent_ = 0;
  BodyFramer req_body_;
  size_t req_pending_ = 0;  // admitted request body bytes at the front of in_
  BodyFramer resp_body_;
  size_t resp_pending_ = 0;  // admitted response body bytes at the front of up_->in()
  uint64_t resp_bytes_ = 0;  // response bytes received from the backend
  bool resp_head_done_ = false;
  bool resp_sent_any_ = false;  // something of a response went to the client
  bool up_shut_ = false;        // tunnel: we shut down our write side to the backend
  bool must_close_ = false;
  bool resp_keep_alive_ = false;  // the backend keeps its connection open after this response
  bool req_keep_alive_ = true;
  bool client_http10_ = false;
  bool upgrade_ = false;
  http::Method method_ = http::Method::kGet;

  ListenerStats* lstats_;
  bool req_open_ = false;  // a request is being accounted
  bool routed_ = false;    // it was handed to the backend (counted there too)
  int status_ = 0;         // final status of the response from the server
  int64_t unix_ms_ = 0;    // wall clock at the request head
  int64_t t_head_us_ = 0;  // monotonic µs at the request head
  int64_t queue_us_ = -1;
  int64_t t_connect_us_ = 0;  // when the current new upstream connection was started
  int64_t connect_us_ = -1;
  int64_t first_byte_us_ = -1;
  uint64_t req_bytes_ = 0;       // request bytes from the client (head + body)
  uint64_t resp_bytes_out_ = 0;  // response bytes to the client
  std::string log_method_;       // copies for the access log (only while it is on)
  std::string log_path_;
};

}  // namespace tandem::proxy
