#include "core/tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace tandem::tls {
namespace {

// Mozilla's "intermediate" TLS 1.2 list: forward secrecy (ECDHE) and AEAD only, AES-128 first.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
// All TLS 1.3 suites are AEAD; AES-128 first (OpenSSL's default order puts AES-256 first).
constexpr char kTls13Suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr unsigned char kSessionContext[] = "tandem";
// Certificates and keys are small; this bounds what `tandem check` reads from a wrong path.
constexpr off_t kMaxPemBytes = 1 << 20;
// Plaintext per SSL_write: one full record.
constexpr size_t kMaxRecord = 16 * 1024;

// The reasons OpenSSL queued, oldest first; the queue is left empty.
std::string sslErrors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    char code[64];
    if (reason == nullptr) {
      ERR_error_string_n(e, code, sizeof code);
      reason = code;
    }
    if (!text.empty()) text += "; ";
    text += reason;
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

// Never prompts for a passphrase (OpenSSL's default would read the terminal).
int noPassphrase(char*, int, int, void*) { return 0; }

tl::expected<std::string, std::string> readFile(const std::string& path) {
  // O_NONBLOCK: a FIFO named by mistake must not hang `tandem check`.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return tl::unexpected("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return tl::unexpected(path + " is not a regular file");
  }
  if (st.st_size > kMaxPemBytes) {
    ::close(fd);
    return tl::unexpected(path + " is larger than 1MiB; not a PEM file");
  }
  std::string text;
  char buffer[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      ::close(fd);
      return tl::unexpected("cannot read " + path + ": " + std::strerror(saved));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > static_cast<size_t>(kMaxPemBytes)) break;
  }
  ::close(fd);
  return text;
}

// SAN dNSNames; the subject CN only when there are none (RFC 6125 §6.4.4).
std::vector<std::string> dnsNames(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
      if (name->type != GEN_DNS) continue;
      const ASN1_STRING* s = name->d.dNSName;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    X509_NAME* subject = X509_get_subject_name(cert);
    const int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i >= 0) {
      unsigned char* utf8 = nullptr;
      const int n =
          ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
      if (n > 0) names.emplace_back(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
      OPENSSL_free(utf8);
    }
  }
  for (std::string& n : names) n = normalizeHostName(n);
  return names;
}

// RFC 7301: http/1.1 if the client offers it; otherwise a fatal no_application_protocol alert
// rather than a silent fallback the client did not ask for.
int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  constexpr std::string_view kHttp11 = "http/1.1";
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int n = in[i];
    if (n == 0 || i + 1 + n > inlen) break;
    if (std::string_view(reinterpret_cast<const char*>(in + i + 1), n) == kHttp11) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(n);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// SNI: switches the connection to the certificate that names the host (the default otherwise).
int selectCertificate(SSL* ssl, int*, void* arg) {
  const auto* sc = static_cast<const ServerContext*>(arg);
  const char* host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (host == nullptr) return SSL_TLSEXT_ERR_NOACK;
  const size_t i = sc->select(host);
  if (i != 0 && SSL_set_SSL_CTX(ssl, sc->context(i)) == nullptr) return SSL_TLSEXT_ERR_ALERT_FATAL;
  return SSL_TLSEXT_ERR_OK;
}

SSL_CTX* newContext(const ServerOptions& options) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return nullptr;
  const bool ok =
      SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 &&
      SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) == 1 &&
      SSL_CTX_set_ciphersuites(ctx, kTls13Suites) == 1 &&
      SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1) == 1;
  if (!ok) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  SSL_CTX_set_options(
      ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Idle keep-alive connections give their 16 KiB record buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(ctx, 1);
  // Resumption by tickets only: a server-side cache is one lock shared by every worker.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (options.alpn_http11) SSL_CTX_set_alpn_select_cb(ctx, selectAlpn, nullptr);
  return ctx;
}

long bioCtrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int bioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

bool wouldBlock(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

}  // namespace

std::string normalizeHostName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

void SniTable::add(const std::vector<std::string>& names, int index) {
  for (const std::string& raw : names) {
    std::string name = normalizeHostName(raw);
    if (name.starts_with("*.")) {
      std::string rest = name.substr(2);
      if (!rest.empty() && rest.find('*') == std::string::npos) wildcard_.emplace(rest, index);
    } else if (!name.empty() && name.find('*') == std::string::npos) {
      exact_.emplace(std::move(name), index);
    }
  }
}

int SniTable::find(std::string_view host) const {
  const std::string name = normalizeHostName(host);
  if (name.empty()) return -1;
  if (auto it = exact_.find(name); it != exact_.end()) return it->second;
  const size_t dot = name.find('.');
  if (dot == 0 || dot == std::string::npos) return -1;
  if (auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end()) return it->second;
  return -1;
}

ServerContext::~ServerContext() {
  for (Cert& c : certs_) SSL_CTX_free(c.ctx);
}

size_t ServerContext::select(std::string_view host) const {
  if (certs_.size() < 2 || host.empty()) return 0;
  const int i = sni_.find(host);
  return i < 0 ? 0 : static_cast<size_t>(i);
}

tl::expected<std::shared_ptr<const ServerContext>, LoadError> ServerContext::load(
    const std::vector<CertificateFiles>& certificates, const ServerOptions& options) {
  std::shared_ptr<ServerContext> sc(new ServerContext());
  ERR_clear_error();
  for (size_t i = 0; i < certificates.size(); ++i) {
    const CertificateFiles& files = certificates[i];
    auto fail = [i](bool key, std::string reason) {
      ERR_clear_error();
      return tl::unexpected<LoadError>(LoadError{i, key, std::move(reason)});
    };
    auto cert_pem = readFile(files.cert);
    if (!cert_pem) return fail(false, cert_pem.error());
    auto key_pem = readFile(files.key);
    if (!key_pem) return fail(true, key_pem.error());

    SSL_CTX* ctx = newContext(options);
    if (ctx == nullptr) return fail(false, "cannot create a TLS context: " + sslErrors());
    sc->certs_.push_back(Cert{ctx, {}});  // freed with `sc` on any failure below

    // The certificate, then any chain certificates after it in the same file.
    BIO* bio = BIO_new_mem_buf(cert_pem->data(), static_cast<int>(cert_pem->size()));
    X509* leaf = bio ? PEM_read_bio_X509_AUX(bio, nullptr, noPassphrase, nullptr) : nullptr;
    if (leaf == nullptr) {
      BIO_free(bio);
      return fail(false, files.cert + ": no PEM certificate (" + sslErrors() + ")");
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
      X509_free(leaf);
      BIO_free(bio);
      return fail(false, files.cert + ": certificate not usable (" + sslErrors() + ")");
    }
    sc->certs_.back().names = dnsNames(leaf);
    while (X509* extra = PEM_read_bio_X509(bio, nullptr, noPassphrase, nullptr)) {
      if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
        X509_free(extra);
        X509_free(leaf);
        BIO_free(bio);
        return fail(false, files.cert + ": chain certificate not usable (" + sslErrors() + ")");
      }
    }
    BIO_free(bio);
    // The chain loop ends at the end of the file ("no start line"); anything else is damage.
    const unsigned long last = ERR_peek_last_error();
    if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE) {
      X509_free(leaf);
      return fail(false, files.cert + ": damaged chain certificate (" + sslErrors() + ")");
    }
    ERR_clear_error();

    bio = BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size()));
    EVP_PKEY* pkey = bio ? PEM_read_bio_PrivateKey(bio, nullptr, noPassphrase, nullptr) : nullptr;
    BIO_free(bio);
    if (pkey == nullptr) {
      X509_free(leaf);
      if (key_pem->find("ENCRYPTED") != std::string::npos) {
        return fail(true, files.key + ": the key is encrypted (passphrases are not supported)");
      }
      return fail(true, files.key + ": no PEM private key (" + sslErrors() + ")");
    }
    const bool matches = X509_check_private_key(leaf, pkey) == 1;
    X509_free(leaf);
    if (!matches) {
      EVP_PKEY_free(pkey);
      return fail(true, files.key + ": the key does not match the certificate " + files.cert);
    }
    const bool used = SSL_CTX_use_PrivateKey(ctx, pkey) == 1;
    EVP_PKEY_free(pkey);
    if (!used || SSL_CTX_check_private_key(ctx) != 1) {
      return fail(true, files.key + ": key not usable (" + sslErrors() + ")");
    }
  }
  for (size_t i = 0; i < sc->certs_.size(); ++i) {
    sc->sni_.add(sc->certs_[i].names, static_cast<int>(i));
  }
  // With one certificate there is nothing to choose: it is served for any name and without SNI.
  if (sc->certs_.size() > 1) {
    SSL_CTX_set_tlsext_servername_callback(sc->certs_[0].ctx, selectCertificate);
    SSL_CTX_set_tlsext_servername_arg(sc->certs_[0].ctx, sc.get());
  }
  return std::shared_ptr<const ServerContext>(std::move(sc));
}

// ---- connection -------------------------------------------------------------------------------

Conn::Conn(std::shared_ptr<const ServerContext> ctx, int fd, BufferPool& pool)
    : ctx_(std::move(ctx)), fd_(fd), out_(pool) {}

Conn::~Conn() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees the BIO too
}

std::unique_ptr<Conn> Conn::make(std::shared_ptr<const ServerContext> ctx, int fd,
                                 BufferPool& pool) {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tandem socket");
    if (m != nullptr) {
      BIO_meth_set_read(m, &Conn::bioRead);
      BIO_meth_set_write(m, &Conn::bioWrite);
      BIO_meth_set_ctrl(m, bioCtrl);
      BIO_meth_set_create(m, bioCreate);
    }
    return m;
  }();
  if (method == nullptr || !ctx || ctx->size() == 0) return nullptr;
  std::unique_ptr<Conn> c(new Conn(std::move(ctx), fd, pool));
  c->ssl_ = SSL_new(c->ctx_->context(0));
  BIO* bio = c->ssl_ ? BIO_new(method) : nullptr;
  if (bio == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  BIO_set_data(bio, c.get());
  SSL_set_bio(c->ssl_, bio, bio);  // one reference for both directions, owned by the SSL
  SSL_set_accept_state(c->ssl_);
  return c;
}

int Conn::bioRead(BIO* bio, char* data, int len) {
  auto* c = static_cast<Conn*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  for (;;) {
    const ssize_t n = ::read(c->fd_, data, static_cast<size_t>(len));
    if (n > 0) {
      c->received_any_ = true;
      return static_cast<int>(n);
    }
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    if (wouldBlock(errno)) BIO_set_retry_read(bio);
    return -1;
  }
}

int Conn::bioWrite(BIO* bio, const char* data, int len) {
  auto* c = static_cast<Conn*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (c->failed_) return -1;
  // Never blocks OpenSSL: everything written in one SSL call leaves in one send() (flush).
  c->out_.append({data, static_cast<size_t>(len)});
  return len;
}

bool Conn::flush(bool& writable) {
  if (failed_) return false;
  while (!out_.empty() && writable) {
    const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      // A short send means the socket buffer is full: the next EPOLLOUT edge says when to go on.
      if (static_cast<size_t>(n) < out_.size()) writable = false;
      out_.consume(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (wouldBlock(errno)) {
      writable = false;
      break;
    }
    failed_ = true;
    out_.clear();
    return false;
  }
  if (out_.empty()) {
    out_.releaseIfEmpty();
    if (shut_pending_) {
      shut_pending_ = false;
      ::shutdown(fd_, SHUT_WR);
    }
  }
  return true;
}

Conn::Handshake Conn::handshake(bool& readable, bool& writable) {
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  const int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
  std::string reason = e == SSL_ERROR_SSL ? sslErrors() : std::string();
  // The handshake's flight (or the alert of a failure) leaves now.
  const bool sent = flush(writable);
  if (r == 1 && sent) return Handshake::kDone;
  if (e == SSL_ERROR_WANT_READ && sent) {
    readable = false;
    return Handshake::kWait;
  }
  if (!sent) {
    failure_ = "socket error while sending";
  } else if (e == SSL_ERROR_SSL) {
    failure_ = std::move(reason);
  } else if (e == SSL_ERROR_SYSCALL) {
    failure_ = errno ? std::strerror(errno) : "connection closed";
  } else {
    failure_ = "TLS error " + std::to_string(e);
  }
  ERR_clear_error();
  return Handshake::kFailed;
}

ssize_t Conn::read(Buffer& into, bool& readable, bool& writable) {
  if (into.writable() < 4096) into.prepare(4096);
  char* p = into.prepare(1);
  const int room = static_cast<int>(std::min<size_t>(into.writable(), INT_MAX));
  ERR_clear_error();
  const int n = SSL_read(ssl_, p, room);
  const int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_, n);
  // Reading may have produced records to send (an alert, a KeyUpdate answer).
  if (!out_.empty() && !flush(writable)) return -2;
  if (n > 0) {
    into.commit(static_cast<size_t>(n));
    return n;
  }
  switch (e) {
    case SSL_ERROR_WANT_READ:
      readable = false;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;  // close_notify
    default:
      ERR_clear_error();
      return -2;  // includes a FIN without close_notify: the session treats both as the end
  }
}

ssize_t Conn::write(std::string_view a, std::string_view b, bool& writable) {
  if (failed_) return -2;
  if (!out_.empty()) {
    if (!flush(writable)) return -2;
    if (!out_.empty()) return -1;  // older records first; `writable` was cleared
  }
  const size_t total = std::min(a.size() + b.size(), kMaxRecord);
  if (total == 0) return 0;
  const char* p = a.data();
  if (a.empty()) {
    p = b.data();
  } else if (a.size() < total) {
    // A head and the start of its body in one record (and one send).
    thread_local char scratch[kMaxRecord];
    std::memcpy(scratch, a.data(), a.size());
    std::memcpy(scratch + a.size(), b.data(), total - a.size());
    p = scratch;
  }
  ERR_clear_error();
  const int n = SSL_write(ssl_, p, static_cast<int>(total));
  if (n <= 0) {
    failed_ = true;
    ERR_clear_error();
    return -2;
  }
  if (!flush(writable)) return -2;
  return n;
}

void Conn::shutdownWrite(bool& writable) {
  ERR_clear_error();
  if (SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);  // queues close_notify (never blocks)
  ERR_clear_error();
  shut_pending_ = true;
  flush(writable);
}

std::string_view Conn::version() const { return SSL_get_version(ssl_); }

std::string_view Conn::alpn() const {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return {reinterpret_cast<const char*>(data), len};
}

}  // namespace tandem::tls
