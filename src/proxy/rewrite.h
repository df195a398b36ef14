#pragma once
// Header rules of the HTTP proxy: what is forwarded, what is added, and the generated responses.
#include <string_view>

#include "config/config.h"
#include "core/buffer.h"
#include "http/parser.h"

namespace tandem::proxy {

struct RequestRewrite {
  std::string_view client_ip;
  bool upgrade = false;  // tunnel an Upgrade (keep Connection: upgrade + Upgrade)
  bool https = false;    // the client came over TLS: X-Forwarded-Proto: https
};

// Writes the request head to send upstream: request line, end-to-end headers, X-Forwarded-For
// (appended), X-Forwarded-Proto (ours replaces the client's), Via. HTTP/1.0 clients are forwarded
// as HTTP/1.0 with Connection: keep-alive so the backend neither chunks nor closes.
void writeRequestHead(const http::RequestHead& req, const RequestRewrite& rw, Buffer& out);

struct ResponseRewrite {
  bool close = false;  // we close the client connection after this response
  bool client_http10 = false;
  bool upgrade = false;         // 101 to an Upgrade request: keep Connection/Upgrade
  std::string_view set_cookie;  // a Set-Cookie header value to add (sticky cookie), or empty
};

// Writes the response head for the client: status line, end-to-end headers, Via, Connection.
void writeResponseHead(std::string_view raw_head, const http::ResponseHead& resp,
                       const ResponseRewrite& rw, Buffer& out);

// A complete generated response ("HTTP/1.1 504 Gateway Timeout" + short text body), closing.
std::string_view errorResponse(int status);
// 429 Too Many Requests with Retry-After, closing.
std::string tooManyRequests(int retry_after_s);

// The balancing key of a request, per the backend's hash_key.
std::string_view hashKeyOf(const http::RequestHead& req, const config::HashKey& key,
                           std::string_view client_ip_bytes);

}  // namespace tandem::proxy
