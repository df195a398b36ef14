#pragma once
// A small HTTP/1.1 server for the admin API on one EventLoop (the control thread). Not the data
// plane: plain strings, one request at a time per connection, bodies only with Content-Length.
// Handlers answer synchronously, or turn the connection into a server-sent-events stream.
//
// Threading: everything runs on the loop's thread.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/event_loop.h"
#include "core/socket.h"

namespace tandem::admin {

struct HttpRequest {
  std::string method;
  std::string path;   // without the query
  std::string query;  // after '?', undecoded
  std::string authorization;
  std::string body;
  std::string peer;  // client IP text
  std::string header(std::string_view name) const;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool stream = false;  // text/event-stream: the connection stays open for broadcast()
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer(EventLoop& loop, Handler handler);
  ~HttpServer();

  // Binds and starts accepting (call on the loop thread or before the loop runs).
  Result<void> listen(const SockAddr& addr);
  uint16_t port() const;

  // Appends `data` to every open event stream; streams that fall too far behind are closed.
  void broadcast(std::string_view data);
  // Closes every connection and the listening socket.
  void close();

 private:
  class Conn;
  class Acceptor;
  friend class Conn;
  void onAccept();
  void closed(Conn* c);

  EventLoop& loop_;
  Handler handler_;
  int listen_fd_ = -1;
  std::unique_ptr<Acceptor> acceptor_;
  std::vector<Conn*> conns_;
};

// Standard reason phrase for the statuses the admin server uses.
std::string_view reasonPhrase(int status);

}  // namespace tandem::admin
