#pragma once
// Certificates for TLS tests, made with the OpenSSL API (no openssl binary, no fixed files):
// EC P-256 keys, leaf certificates with SANs signed by a test CA or by themselves.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace tandem::tls::test_util {

// A temporary folder removed (with its files) at scope exit.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tandem-tls-test-XXXXXX";
    path_ = ::mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    // Newest first, so that files go before the folders they are in.
    for (auto it = files_.rbegin(); it != files_.rend(); ++it) std::remove(it->c_str());
    ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string p = file(name);
    FILE* f = std::fopen(p.c_str(), "w");
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    return p;
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

struct KeyPair {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  KeyPair() = default;
  KeyPair(const KeyPair&) = delete;
  KeyPair& operator=(const KeyPair&) = delete;
  ~KeyPair() {
    EVP_PKEY_free(key);
    X509_free(cert);
  }
  std::string certPem() const {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, cert);
    return drain(b);
  }
  std::string keyPem() const {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
    return drain(b);
  }
  std::string encryptedKeyPem() const {
    BIO* b = BIO_new(BIO_s_mem());
    char pass[] = "secret";
    PEM_write_bio_PrivateKey(b, key, EVP_aes_128_cbc(), nullptr, 0, nullptr, pass);
    return drain(b);
  }

 private:
  static std::string drain(BIO* b) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    std::string out(data, static_cast<size_t>(n));
    BIO_free(b);
    return out;
  }
};

inline void addExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `cn` with `sans` as DNS names (none: no SAN extension), signed by `ca` or
// self-signed when `ca` is null; `is_ca` makes it a CA.
inline void makeCert(KeyPair& out, const std::string& cn, const std::vector<std::string>& sans,
                     const KeyPair* ca = nullptr, bool is_ca = false) {
  out.key = EVP_EC_gen("P-256");
  out.cert = X509_new();
  X509_set_version(out.cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(out.cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(out.cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(out.cert), 86400);
  X509_set_pubkey(out.cert, out.key);
  X509_NAME* name = X509_get_subject_name(out.cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(out.cert, ca ? X509_get_subject_name(ca->cert) : name);
  if (!sans.empty()) {
    std::string list;
    for (const std::string& s : sans) list += (list.empty() ? "DNS:" : ",DNS:") + s;
    addExtension(out.cert, ca ? ca->cert : out.cert, NID_subject_alt_name, list);
  }
  if (is_ca) addExtension(out.cert, out.cert, NID_basic_constraints, "critical,CA:TRUE");
  X509_sign(out.cert, ca ? ca->key : out.key, EVP_sha256());
}

}  // namespace tandem::tls::test_util
