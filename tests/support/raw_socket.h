#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace ccm::testing {

// A raw client socket on loopback, for what a well-behaved HTTP client would not do: send
// malformed bytes, trickle, stay silent, hold a connection open.
class RawSocket {
 public:
  // With `receive_buffer`, the socket's kernel receive buffer is that small (set before the
  // connection, so that the window the server sees is small too): a client that stops reading
  // soon stops the server's writes.
  explicit RawSocket(std::uint16_t port, int receive_buffer = 0) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    if (receive_buffer > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect failed";
  }
  ~RawSocket() { close(fd_); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool Send(const std::string& s) {
    return send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Says that nothing more will be sent (the server reads end-of-stream), keeping the
  // receiving side open for its answer.
  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }
  // Everything until the server closes, or what came plus timed_out after `wait`.
  std::string ReadUntilClosed(std::chrono::milliseconds wait, bool* timed_out = nullptr) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) {
        if (timed_out) *timed_out = true;
        return out;
      }
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
};

}  // namespace ccm::testing
