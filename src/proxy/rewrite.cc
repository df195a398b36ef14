#include "proxy/rewrite.h"

#include <fmt/format.h>

#include <cstring>
#include <string>
#include <vector>

namespace tandem::proxy {
namespace {

void put(Buffer& out, std::string_view s) { out.append(s); }

void putHeader(Buffer& out, std::string_view name, std::string_view value) {
  size_t n = name.size() + value.size() + 4;
  char* p = out.prepare(n);
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = ':';
  *p++ = ' ';
  std::memcpy(p, value.data(), value.size());
  p += value.size();
  *p++ = '\r';
  *p++ = '\n';
  out.commit(n);
}

// Appends `value` to a comma-separated list header value that may already have entries.
void putListHeader(Buffer& out, std::string_view name, const http::MessageHead& h,
                   std::string_view value) {
  put(out, name);
  put(out, ": ");
  for (size_t i = 0; i < h.header_count; ++i) {
    if (http::iequals(h.headers[i].name, name) && !h.headers[i].value.empty()) {
      put(out, h.headers[i].value);
      put(out, ", ");
    }
  }
  put(out, value);
  put(out, "\r\n");
}

// Repeated identical Content-Length fields (or "3, 3") were accepted by the parser; the backend
// and the client get exactly one (RFC 9110 §8.6).
void putContentLength(Buffer& out, const http::MessageHead& h) {
  for (size_t i = 0; i < h.header_count; ++i) {
    if (http::iequals(h.headers[i].name, "content-length")) {
      if (h.body == http::BodyKind::kContentLength) {
        putHeader(out, "Content-Length", fmt::format_int(h.content_length).c_str());
      } else {
        // HEAD/304: the length it would have; of a validated "N, N" list, one N.
        std::string_view v = h.headers[i].value;
        putHeader(out, "Content-Length", v.substr(0, v.find(',')));
      }
      return;
    }
  }
}

bool isUpgradeHeader(std::string_view name) {
  return http::iequals(name, "upgrade") || http::iequals(name, "connection");
}

}  // namespace

void writeRequestHead(const http::RequestHead& req, const RequestRewrite& rw, Buffer& out) {
  const bool http10 = req.version_minor == 0;
  put(out, req.method_text);
  put(out, " ");
  put(out, req.target);
  put(out, http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  for (size_t i = 0; i < req.header_count; ++i) {
    const http::Header& h = req.headers[i];
    if (req.isHopByHop(i) && !(rw.upgrade && http::iequals(h.name, "upgrade"))) continue;
    if (http::iequals(h.name, "x-forwarded-for") || http::iequals(h.name, "x-forwarded-proto") ||
        http::iequals(h.name, "via") || http::iequals(h.name, "content-length")) {
      continue;  // rewritten below
    }
    putHeader(out, h.name, h.value);
  }
  putContentLength(out, req);
  putListHeader(out, "X-Forwarded-For", req, rw.client_ip);
  put(out, rw.https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
  putListHeader(out, "Via", req, http10 ? "1.0 tandem" : "1.1 tandem");
  if (rw.upgrade) {
    put(out, "Connection: Upgrade\r\n");  // ours: a client's list could name headers we add
  } else if (http10) {
    put(out, "Connection: keep-alive\r\n");
  }
  put(out, "\r\n");
}

void writeResponseHead(std::string_view raw_head, const http::ResponseHead& resp,
                       const ResponseRewrite& rw, Buffer& out) {
  // Status line as received, but in our version: we speak HTTP/1.1 to the client.
  size_t eol = raw_head.find("\r\n");
  std::string_view line = raw_head.substr(0, eol);
  put(out, "HTTP/1.1");
  put(out, line.substr(8));
  put(out, "\r\n");
  for (size_t i = 0; i < resp.header_count; ++i) {
    const http::Header& h = resp.headers[i];
    if (resp.isHopByHop(i) && !(rw.upgrade && isUpgradeHeader(h.name))) continue;
    if (http::iequals(h.name, "via") || http::iequals(h.name, "content-length")) continue;
    putHeader(out, h.name, h.value);
  }
  putContentLength(out, resp);
  putListHeader(out, "Via", resp, resp.version_minor == 0 ? "1.0 tandem" : "1.1 tandem");
  if (!rw.set_cookie.empty()) putHeader(out, "Set-Cookie", rw.set_cookie);
  if (rw.upgrade) {
    // Connection: upgrade kept above.
  } else if (rw.close) {
    put(out, "Connection: close\r\n");
  } else if (rw.client_http10) {
    put(out, "Connection: keep-alive\r\n");
  }
  put(out, "\r\n");
}

std::string tooManyRequests(int retry_after_s) {
  static constexpr std::string_view kBody = "Too Many Requests\n";
  std::string r = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: ";
  r += std::to_string(kBody.size());
  r += "\r\nRetry-After: ";
  r += std::to_string(retry_after_s);
  r += "\r\nConnection: close\r\n\r\n";
  r += kBody;
  return r;
}

std::string_view errorResponse(int status) {
  struct Canned {
    int status;
    const char* reason;
    const char* body;
  };
  static constexpr Canned kCanned[] = {
      {400, "Bad Request", "Bad Request\n"},
      {408, "Request Timeout", "Request Timeout\n"},
      {413, "Content Too Large", "Content Too Large\n"},
      {431, "Request Header Fields Too Large", "Request Header Fields Too Large\n"},
      {500, "Internal Server Error", "Internal Server Error\n"},
      {501, "Not Implemented", "Not Implemented\n"},
      {502, "Bad Gateway", "Bad Gateway: the backend failed\n"},
      {503, "Service Unavailable", "Service Unavailable: no server can take the request\n"},
      {504, "Gateway Timeout", "Gateway Timeout: the backend did not answer in time\n"},
      {505, "HTTP Version Not Supported", "HTTP Version Not Supported\n"},
  };
  // Built once (thread-safe static init); every later call is a lookup.
  static const std::vector<std::string> kResponses = [] {
    std::vector<std::string> v;
    for (const Canned& c : kCanned) {
      v.push_back(
          fmt::format("HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n"
                      "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                      c.status, c.reason, std::strlen(c.body), c.body));
    }
    return v;
  }();
  size_t fallback = 0;
  for (size_t i = 0; i < std::size(kCanned); ++i) {
    if (kCanned[i].status == status) return kResponses[i];
    if (kCanned[i].status == 500) fallback = i;
  }
  return kResponses[fallback];
}

std::string_view hashKeyOf(const http::RequestHead& req, const config::HashKey& key,
                           std::string_view client_ip_bytes) {
  switch (key.kind) {
    case config::HashKeyKind::kSourceIp:
      return client_ip_bytes;
    case config::HashKeyKind::kUri:
      return req.target;
    case config::HashKeyKind::kHeader: {
      const http::Header* h = req.find(key.name);
      return h ? h->value : std::string_view{};
    }
    case config::HashKeyKind::kCookie: {
      for (size_t i = 0; i < req.header_count; ++i) {
        if (!http::iequals(req.headers[i].name, "cookie")) continue;
        std::string_view v = req.headers[i].value;
        while (!v.empty()) {
          size_t semi = v.find(';');
          std::string_view pair = v.substr(0, semi);
          while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
          size_t eq = pair.find('=');
          if (eq != std::string_view::npos && pair.substr(0, eq) == key.name) {
            return pair.substr(eq + 1);
          }
          if (semi == std::string_view::npos) break;
          v.remove_prefix(semi + 1);
        }
      }
      return {};
    }
  }
  return {};
}

}  // namespace tandem::proxy
