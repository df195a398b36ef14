// The strict reference reading of RFC 9112 request heads; see rfc9112_reference.h. Independent of
// src/http on purpose: character sets are spelled out here from the RFC grammar.
#include "rfc9112_reference.h"

namespace tandem::reference {
namespace {

using std::string_view;

bool alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool hexdig(unsigned char c) {
  return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool oneOf(unsigned char c, string_view set) {
  return c != 0 && set.find(char(c)) != string_view::npos;
}

// RFC 9110 §5.6.2: tchar.
bool tchar(unsigned char c) { return alpha(c) || digit(c) || oneOf(c, "!#$%&'*+-.^_`|~"); }
bool token(string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!tchar(c)) return false;
  }
  return true;
}
// RFC 3986 §2.
bool unreserved(unsigned char c) { return alpha(c) || digit(c) || oneOf(c, "-._~"); }
bool subDelim(unsigned char c) { return oneOf(c, "!$&'()*+,;="); }
bool pchar(unsigned char c) { return unreserved(c) || subDelim(c) || oneOf(c, ":@"); }
bool ows(unsigned char c) { return c == ' ' || c == '\t'; }

bool lowerEquals(string_view s, string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c + 32);
    if (c != static_cast<unsigned char>(lower[i])) return false;
  }
  return true;
}

string_view trim(string_view s) {
  while (!s.empty() && ows(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && ows(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Every char is `ok`, every '%' starts a pct-encoded triplet (RFC 3986 §2.1).
template <typename Ok>
bool pctString(string_view s, Ok&& ok) {
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '%') {
      if (i + 2 >= s.size()) return false;
      if (!hexdig(static_cast<unsigned char>(s[i + 1])) ||
          !hexdig(static_cast<unsigned char>(s[i + 2]))) {
        return false;
      }
      i += 2;
    } else if (!ok(c)) {
      return false;
    }
  }
  return true;
}

// Characters that can occur somewhere in an authority (reg-name, IP-literal, port).
bool authorityChar(unsigned char c) { return unreserved(c) || subDelim(c) || oneOf(c, ":[]%"); }

// RFC 3986 §3.2.2 host: IP-literal / reg-name (IPv4address is a reg-name). IP-literal is checked
// loosely (hex digits, ':' and '.'; or an IPvFuture).
bool uriHost(string_view h) {
  if (!h.empty() && h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') return false;
    const string_view lit = h.substr(1, h.size() - 2);
    if (lit[0] == 'v' || lit[0] == 'V') {
      const size_t dot = lit.find('.');
      if (dot == string_view::npos || dot < 2 || dot + 1 == lit.size()) return false;
      for (size_t i = 1; i < dot; ++i) {
        if (!hexdig(static_cast<unsigned char>(lit[i]))) return false;
      }
      for (size_t i = dot + 1; i < lit.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(lit[i]);
        if (!unreserved(c) && !subDelim(c) && c != ':') return false;
      }
      return true;
    }
    for (unsigned char c : lit) {
      if (!hexdig(c) && c != ':' && c != '.') return false;
    }
    return true;
  }
  return pctString(h, [](unsigned char c) { return unreserved(c) || subDelim(c); });
}

bool allDigits(string_view s) {
  for (unsigned char c : s) {
    if (!digit(c)) return false;
  }
  return true;
}

// uri-host [ ":" port ], port = *DIGIT (RFC 9110 §7.2 Host).
bool hostAndOptionalPort(string_view v) {
  size_t colon = string_view::npos;
  if (!v.empty() && v.front() == '[') {
    const size_t close = v.find(']');
    if (close == string_view::npos) return false;
    if (close + 1 < v.size()) {
      if (v[close + 1] != ':') return false;
      colon = close + 1;
    }
  } else {
    colon = v.find(':');
  }
  if (colon == string_view::npos) return uriHost(v);
  return uriHost(v.substr(0, colon)) && allDigits(v.substr(colon + 1));
}

struct Reader {
  Verdict v;

  Verdict reject(Rule r) {
    v.status = Status::kReject;
    v.rule = r;
    return v;
  }

  // The request-target (RFC 9112 §3.2). Returns false on a hard violation.
  bool checkTarget(string_view method, string_view t) {
    if (t.empty()) return false;
    for (unsigned char c : t) {
      if (c < 0x21 || c > 0x7e || c == '#') return false;  // no form has these
    }
    if (method == "CONNECT") {  // §3.2.3: authority-form, and only that
      const size_t colon = t.rfind(':');
      if (colon == string_view::npos || colon == 0 || colon + 1 == t.size()) return false;
      const string_view host = t.substr(0, colon), port = t.substr(colon + 1);
      if (!allDigits(port)) return false;
      for (unsigned char c : host) {
        if (!authorityChar(c)) return false;
      }
      if (!uriHost(host)) v.soft |= kSoftTargetSyntax;
      if (port.size() > 5) v.notes |= kNoteLongPort;
      return true;
    }
    if (t == "*") return method == "OPTIONS";  // §3.2.4
    if (t[0] == '/') {                         // §3.2.1 origin-form
      if (!pctString(t, [](unsigned char c) { return pchar(c) || c == '/' || c == '?'; })) {
        v.soft |= kSoftTargetSyntax;
      }
      return true;
    }
    // §3.2.2 absolute-form: scheme ":" hier-part [ "?" query ] (RFC 3986 §4.3).
    if (!alpha(static_cast<unsigned char>(t[0]))) return false;
    size_t i = 1;
    while (i < t.size() && (alpha(static_cast<unsigned char>(t[i])) ||
                            digit(static_cast<unsigned char>(t[i])) || oneOf(t[i], "+-."))) {
      ++i;
    }
    if (i == t.size() || t[i] != ':') return false;
    const string_view scheme = t.substr(0, i), rest = t.substr(i + 1);
    if (rest.empty()) v.notes |= kNoteEmptyHierPart;
    if (!pctString(rest, [](unsigned char c) { return pchar(c) || oneOf(c, "/?[]"); })) {
      v.soft |= kSoftTargetSyntax;
    }
    if (lowerEquals(scheme, "http") || lowerEquals(scheme, "https")) {
      // RFC 9110 §4.2.1, §4.2.4: a non-empty host; userinfo is an error.
      if (rest.substr(0, 2) != "//") {
        v.soft |= kSoftTargetSyntax;
      } else {
        const string_view auth = rest.substr(2, rest.find_first_of("/?", 2) - 2);
        if (auth.find('@') != string_view::npos || !hostAndOptionalPort(auth) || auth.empty() ||
            auth[0] == ':') {
          v.soft |= kSoftTargetSyntax;
        }
      }
    }
    return true;
  }

  // A Transfer-Encoding field value (RFC 9112 §6.1, §7; list rules RFC 9110 §5.6.1). Appends to
  // `codings` (count, whether the last one is chunked). Returns false on a hard violation.
  struct Codings {
    int count = 0;
    int chunked = 0;
    bool last_chunked = false;
    bool chunked_with_params = false;
  };
  bool transferEncoding(string_view value, Codings& c) {
    size_t i = 0;
    const auto skipOws = [&] {
      while (i < value.size() && ows(static_cast<unsigned char>(value[i]))) ++i;
    };
    const auto readToken = [&] {
      const size_t b = i;
      while (i < value.size() && tchar(static_cast<unsigned char>(value[i]))) ++i;
      return value.substr(b, i - b);
    };
    for (;;) {
      skipOws();
      if (i == value.size() || value[i] == ',') {  // an empty element
        v.notes |= kNoteEmptyListElement;
        if (i == value.size()) return true;
        ++i;
        continue;
      }
      const string_view name = readToken();
      if (name.empty()) return false;
      bool params = false;
      for (;;) {  // *( OWS ";" OWS transfer-parameter )
        const size_t save = i;
        skipOws();
        if (i == value.size() || value[i] != ';') {
          i = save;
          break;
        }
        ++i;
        skipOws();
        if (readToken().empty()) return false;
        skipOws();  // BWS
        if (i == value.size() || value[i] != '=') return false;
        ++i;
        skipOws();
        if (i < value.size() && value[i] == '"') {  // quoted-string
          ++i;
          for (;;) {
            if (i == value.size()) return false;
            const unsigned char q = static_cast<unsigned char>(value[i]);
            if (q == '"') break;
            if (q == '\\') {
              if (++i == value.size()) return false;
            } else if (q < 0x20 && q != '\t') {
              return false;
            } else if (q == 0x7f) {
              return false;
            }
            ++i;
          }
          ++i;
        } else if (readToken().empty()) {
          return false;
        }
        params = true;
      }
      skipOws();
      if (i < value.size() && value[i] != ',') return false;
      ++c.count;
      c.last_chunked = lowerEquals(name, "chunked");
      if (c.last_chunked) {
        ++c.chunked;
        c.chunked_with_params |= params;
      } else {
        v.notes |= kNoteOtherCoding;
      }
      if (i == value.size()) return true;
      ++i;  // ','
    }
  }

  Verdict read(string_view in) {
    size_t start = 0;
    while (in.substr(start, 2) == "\r\n") start += 2;  // §2.2: empty lines before the request
    const size_t end = in.find("\r\n\r\n", start);
    const size_t scan_end = end == string_view::npos ? in.size() : end + 4;
    for (size_t i = 0; i < scan_end; ++i) {
      if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) return reject(Rule::kBareLf);
    }
    if (end == string_view::npos) return v;  // kIncomplete
    v.head_length = end + 4;
    for (size_t i = 0; i < scan_end; ++i) {
      if (in[i] == '\r' && in[i + 1] != '\n') return reject(Rule::kBareCr);
    }

    // Lines, each without its CRLF; the last one is the request-line's or a field line.
    string_view rest = in.substr(start, end + 2 - start);
    const auto nextLine = [&rest] {
      const size_t crlf = rest.find("\r\n");
      const string_view line = rest.substr(0, crlf);
      rest.remove_prefix(crlf + 2);
      return line;
    };

    // §3 request-line = method SP request-target SP HTTP-version
    const string_view line = nextLine();
    const size_t sp1 = line.find(' ');
    if (sp1 == string_view::npos) return reject(Rule::kRequestLine);
    const size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == string_view::npos) return reject(Rule::kRequestLine);
    const string_view method = line.substr(0, sp1);
    const string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const string_view version = line.substr(sp2 + 1);
    if (!token(method)) return reject(Rule::kMethod);
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" ||
        !digit(static_cast<unsigned char>(version[5])) || version[6] != '.' ||
        !digit(static_cast<unsigned char>(version[7]))) {
      // A space inside the target also lands here (a third SP-separated word).
      return reject(Rule::kRequestLine);
    }
    if (!checkTarget(method, target)) return reject(Rule::kTarget);
    if (version[5] != '1') return reject(Rule::kVersion);
    v.method = method;
    v.target = target;
    v.minor = version[7] - '0';
    if (v.minor >= 2) v.notes |= kNoteMinorVersion;

    // §5 field lines.
    int lines = 0, hosts = 0, lengths = 0;
    string_view host;
    bool have_length = false, have_encoding = false;
    uint64_t length = 0;
    Codings codings;
    while (!rest.empty()) {
      const string_view field = nextLine();
      ++lines;
      if (ows(static_cast<unsigned char>(field[0]))) return reject(Rule::kFieldLineSpace);
      const size_t colon = field.find(':');
      if (colon == string_view::npos || !token(field.substr(0, colon))) {
        return reject(Rule::kFieldName);
      }
      const string_view name = field.substr(0, colon);
      const string_view value = trim(field.substr(colon + 1));
      for (unsigned char c : value) {
        if ((c < 0x20 && c != '\t') || c == 0x7f) return reject(Rule::kFieldValue);
      }
      if (lowerEquals(name, "host")) {
        ++hosts;
        host = value;
      } else if (lowerEquals(name, "content-length")) {
        // RFC 9110 §8.6: 1*DIGIT. A list of one repeated value is the §8.6 "MAY" case.
        size_t b = 0;
        for (;;) {
          size_t e = value.find(',', b);
          if (e == string_view::npos) e = value.size();
          const string_view el = trim(value.substr(b, e - b));
          if (el.empty() || !allDigits(el)) return reject(Rule::kContentLength);
          uint64_t x = 0;
          for (unsigned char c : el) {
            if (x > (UINT64_MAX - (c - '0')) / 10) return reject(Rule::kContentLength);
            x = x * 10 + (c - '0');
          }
          if (have_length && x != length) return reject(Rule::kContentLength);
          have_length = true;
          length = x;
          ++lengths;
          if (e == value.size()) break;
          b = e + 1;
        }
      } else if (lowerEquals(name, "transfer-encoding")) {
        have_encoding = true;
        if (!transferEncoding(value, codings)) return reject(Rule::kTransferEncoding);
      }
    }
    if (lines > 128) v.notes |= kNoteManyFields;

    // §3.2: Host.
    if (hosts > 1 || (hosts == 0 && v.minor >= 1)) return reject(Rule::kHost);
    for (unsigned char c : host) {
      if (!authorityChar(c)) return reject(Rule::kHost);
    }
    if (hosts == 1 && !hostAndOptionalPort(host)) v.soft |= kSoftHostSyntax;

    // §6.3: framing.
    if (have_encoding) {
      if (have_length) return reject(Rule::kLengthAndEncoding);
      if (v.minor == 0) return reject(Rule::kEncodingInHttp10);
      if (!codings.last_chunked || codings.chunked != 1 || codings.chunked_with_params) {
        return reject(Rule::kTransferEncoding);
      }
      v.framing = Framing::kChunked;
    } else if (have_length) {
      if (lengths > 1) v.soft |= kSoftLengthList;
      if (length >= (uint64_t{1} << 63)) v.notes |= kNoteHugeLength;
      if (length > 0) {
        v.framing = Framing::kLength;
        v.length = length;
      }
    }
    v.status = v.soft != 0 ? Status::kReject : Status::kAccept;
    return v;
  }
};

}  // namespace

Verdict readRequestHead(std::string_view bytes) { return Reader{}.read(bytes); }

const char* ruleName(Rule rule) {
  switch (rule) {
    case Rule::kNone:
      return "none";
    case Rule::kBareLf:
      return "bare LF";
    case Rule::kBareCr:
      return "bare CR";
    case Rule::kRequestLine:
      return "request-line";
    case Rule::kMethod:
      return "method";
    case Rule::kVersion:
      return "HTTP-version";
    case Rule::kTarget:
      return "request-target";
    case Rule::kFieldLineSpace:
      return "whitespace at the start of a field line";
    case Rule::kFieldName:
      return "field-name";
    case Rule::kFieldValue:
      return "field-value";
    case Rule::kHost:
      return "Host";
    case Rule::kContentLength:
      return "Content-Length";
    case Rule::kTransferEncoding:
      return "Transfer-Encoding";
    case Rule::kLengthAndEncoding:
      return "Content-Length with Transfer-Encoding";
    case Rule::kEncodingInHttp10:
      return "Transfer-Encoding in HTTP/1.0";
  }
  return "?";
}

}  // namespace tandem::reference
