#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "clients/http_post.h"
#include "cloudevents/http_binding.h"
#include "ports/event_sink.h"
#include "ports/observers.h"
#include "ports/outbox.h"

namespace ccm::clients {

struct HttpEventSinkOptions {
  std::string url;  // CLOUDEVENTS_SINK_URL
  cloudevents::Mode mode = cloudevents::Mode::kStructured;
  int batch_size = 500;  // events per request in batch mode
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds total_timeout{5000};
  ports::RemoteTag tag = {};  // who counts each POST, under the remote's metric name ("sink")
};

// The EventSink over HTTP (libcurl): a keep-alive connection per request in flight (a pool,
// as many connections as the dispatcher's lanes), each reused by the next request. Structured mode posts the
// stored JSON event as it is; binary mode moves the attributes to ce- headers; batch mode
// posts a JSON array. Classifies answers: 2xx delivered; connection errors, timeouts, 408,
// 429 and 5xx retried (Retry-After read in seconds or as an HTTP date); other 4xx final.
// Thread-safe: calls from several threads go out side by side, each on its own connection.
class HttpEventSink final : public ports::EventSink {
 public:
  explicit HttpEventSink(HttpEventSinkOptions options);
  ~HttpEventSink() override;
  int MaxBatch() const override;
  ports::DeliveryOutcome Send(std::span<const ports::OutboxEvent> events) override;

 private:
  HttpEventSinkOptions options_;
  HttpPosterPool pool_;
};

// Parses a Retry-After value: delay-seconds or an IMF-fixdate, relative to `now`.
std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now);

}  // namespace ccm::clients
