#pragma once
// TLS termination with OpenSSL: server contexts (certificates, SNI, ALPN, protocol and cipher
// policy) and a non-blocking connection wrapper for the workers' edge-triggered loops.
//
// Contexts are built by the config loader, so that a bad certificate is a `FILE:LINE` error and a
// reload with one is rejected; they live in the Config, one set per config generation, shared
// read-only by every worker (SSL_CTX is thread-safe for SSL_new). A connection keeps the context
// it was accepted with, so a reload changes the certificate for new connections only.
//
// Policy: TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE + AEAD suites only, in the server's order; no
// renegotiation; session tickets for resumption (no shared session cache: its lock would be taken
// by every worker on every handshake). ALPN (HTTP listeners): `http/1.1` is selected; a client that
// offers ALPN without `http/1.1` (only `h2`, say) gets a fatal no_application_protocol alert (RFC
// 7301 §3.2); a client that offers no ALPN gets HTTP/1.1.
#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"

struct bio_st;
struct ssl_ctx_st;
struct ssl_st;

namespace tandem::tls {

// Lowercase, without a trailing dot: the form names are compared in.
std::string normalizeHostName(std::string_view name);

// Finds the certificate for an SNI host name: an exact name first, then a wildcard
// (`*.example.test` matches exactly one more label: `a.example.test`, not `example.test` nor
// `a.b.example.test`). Among certificates that name the same host, the first added wins.
class SniTable {
 public:
  // Names as they appear in a certificate; they are normalized here. Names that are neither a
  // host name nor a leading `*.` wildcard (`f*o.example`, `*`) are ignored.
  void add(const std::vector<std::string>& names, int index);
  // The index of the certificate for `host`, or -1 if none names it.
  int find(std::string_view host) const;
  bool empty() const { return exact_.empty() && wildcard_.empty(); }

 private:
  std::unordered_map<std::string, int> exact_;
  std::unordered_map<std::string, int> wildcard_;  // "*.example.test" stored as "example.test"
};

struct CertificateFiles {
  std::string cert;  // PEM: the certificate, then its chain (intermediates)
  std::string key;   // PEM: its private key (unencrypted)
};

struct ServerOptions {
  bool alpn_http11 = true;  // HTTP listeners: negotiate http/1.1 (TCP listeners: no ALPN)
};

// Why a certificate could not be loaded.
struct LoadError {
  size_t index = 0;  // which certificate
  bool key = false;  // the key file is at fault (else the certificate file)
  std::string reason;
};

// A listener's TLS contexts: one SSL_CTX per certificate, all with the same policy; the first is
// the default (no SNI, or no certificate names the host). Immutable once built.
class ServerContext {
 public:
  // Reads and checks every certificate and key (PEM, key matching its certificate). Main thread.
  static tl::expected<std::shared_ptr<const ServerContext>, LoadError> load(
      const std::vector<CertificateFiles>& certificates, const ServerOptions& options);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  size_t size() const { return certs_.size(); }
  // DNS names of certificate i (SAN, or the subject CN when it has none), normalized.
  const std::vector<std::string>& names(size_t i) const { return certs_[i].names; }
  // The certificate served for SNI `host` (empty: none sent): its index.
  size_t select(std::string_view host) const;
  ssl_ctx_st* context(size_t i) const { return certs_[i].ctx; }

 private:
  ServerContext() = default;
  struct Cert {
    ssl_ctx_st* ctx = nullptr;
    std::vector<std::string> names;
  };
  std::vector<Cert> certs_;
  SniTable sni_;
};

// One server-side TLS connection over a non-blocking socket, driven by the session's readiness
// flags (`readable`/`writable`, cleared here when the socket would block, as the plain paths do).
//
// Records are written to the socket by our own BIO, which never blocks OpenSSL: ciphertext that
// the socket does not take is kept here and sent by flush() (call it on EPOLLOUT). So SSL_write
// never answers WANT_WRITE and never has to be retried with the same bytes, and the session may
// change what it has not written yet (replace an unsent head with an error page) freely. Reads go
// straight to the socket (read-ahead on: one syscall per burst, not two per record).
class Conn {
 public:
  // nullptr if OpenSSL is out of memory. The connection does not own `fd`.
  static std::unique_ptr<Conn> make(std::shared_ptr<const ServerContext> ctx, int fd,
                                    BufferPool& pool);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  enum class Handshake { kDone, kWait, kFailed };
  // Advances the handshake (kWait: call again when readable).
  Handshake handshake(bool& readable, bool& writable);
  // Like the plain read: >0 bytes appended to `into`, 0 EOF (close_notify or FIN), -1 would block
  // (clears `readable`), -2 error.
  ssize_t read(Buffer& into, bool& readable, bool& writable);
  // Encrypts `a` then `b` (at most one record, 16 KiB, per call): bytes taken, -1 would block
  // (ciphertext still waits for the socket; clears `writable`), -2 error.
  ssize_t write(std::string_view a, std::string_view b, bool& writable);
  // Sends pending ciphertext while the socket takes it; false on a socket error.
  bool flush(bool& writable);
  bool pending() const { return !out_.empty(); }
  // Half-close: close_notify, then shutdown(SHUT_WR) once everything before it has been sent.
  void shutdownWrite(bool& writable);

  // After the handshake: "TLSv1.3", and the ALPN protocol ("" if none).
  std::string_view version() const;
  std::string_view alpn() const;
  // Whether the client sent any byte (a port probe that connects and closes is no failed
  // handshake), and why the handshake failed (for logs).
  bool receivedAny() const { return received_any_; }
  const std::string& failure() const { return failure_; }

 private:
  Conn(std::shared_ptr<const ServerContext> ctx, int fd, BufferPool& pool);
  static int bioRead(bio_st* bio, char* data, int len);
  static int bioWrite(bio_st* bio, const char* data, int len);

  std::shared_ptr<const ServerContext> ctx_;  // outlives the handshake's SNI callback
  ssl_st* ssl_ = nullptr;
  int fd_;
  Buffer out_;  // ciphertext the socket has not taken yet
  bool received_any_ = false;
  bool failed_ = false;        // the socket failed: nothing more can be sent
  bool shut_pending_ = false;  // shutdown(SHUT_WR) once out_ is empty
  std::string failure_;
};

}  // namespace tandem::tls
