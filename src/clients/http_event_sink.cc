#include "clients/http_event_sink.h"

#include <curl/curl.h>

#include <cctype>
#include <charconv>
#include <ctime>

#include "cloudevents/json_format.h"

namespace ccm::clients {

namespace {

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

size_t OnHeader(char* data, size_t size, size_t n, void* out) {
  std::string_view line(data, size * n);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (size_t i = 0; i < kName.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(line[i])) != kName[i]) match = false;
    if (match) {
      std::string value(line.substr(kName.size()));
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of(" \t\r\n") + 1);
      *static_cast<std::string*>(out) = value;
    }
  }
  return size * n;
}

}  // namespace

std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view v, std::chrono::system_clock::time_point now) {
  if (v.empty()) return std::nullopt;
  long seconds = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (ec == std::errc() && p == v.data() + v.size() && seconds >= 0) return std::chrono::seconds(seconds);
  std::tm tm{};
  const std::string text(v);
  if (!strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
  return std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(at - now));
}

HttpEventSink::HttpEventSink(HttpEventSinkOptions options) : options_(std::move(options)), curl_(curl_easy_init()) {}
HttpEventSink::~HttpEventSink() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

int HttpEventSink::MaxBatch() const { return options_.mode == cloudevents::Mode::kBatch ? options_.batch_size : 1; }

app::DeliveryOutcome HttpEventSink::Send(std::span<const app::OutboxEvent> events) {
  cloudevents::HttpMessage message;
  if (options_.mode == cloudevents::Mode::kBatch) {
    // The stored events are already in the JSON format: join them without parsing.
    message.headers["content-type"] = std::string(cloudevents::kBatchType);
    size_t size = 2;
    for (const auto& e : events) size += e.json.size() + 1;
    message.body.reserve(size);
    message.body.push_back('[');
    for (size_t i = 0; i < events.size(); ++i) {
      if (i) message.body.push_back(',');
      message.body.append(events[i].json);
    }
    message.body.push_back(']');
  } else if (options_.mode == cloudevents::Mode::kStructured) {
    message.headers["content-type"] = std::string(cloudevents::kStructuredType);
    message.body = events.front().json;
  } else {
    auto event = cloudevents::ParseEvent(events.front().json);
    if (!event) return {app::DeliveryOutcome::kFinal, 0, "stored event does not parse: " + event.error().message, {}};
    message = cloudevents::EncodeBinary(*event);
  }

  std::lock_guard lock(mu_);
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, options_.url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, message.body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(message.body.size()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_slist* headers = curl_slist_append(nullptr, "Expect:");
  for (const auto& [k, v] : message.headers) {
    std::string line;
    line.append(k).append(": ").append(v);
    headers = curl_slist_append(headers, line.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  std::string retry_after;
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &retry_after);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) return {app::DeliveryOutcome::kRetry, 0, curl_easy_strerror(rc), {}};
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  app::DeliveryOutcome out;
  out.status = static_cast<int>(status);
  if (status >= 200 && status < 300) {
    out.kind = app::DeliveryOutcome::kDelivered;
  } else if (status == 408 || status == 429 || status >= 500) {
    out.kind = app::DeliveryOutcome::kRetry;
    out.retry_after = ParseRetryAfter(retry_after, std::chrono::system_clock::now());
  } else {
    out.kind = app::DeliveryOutcome::kFinal;
  }
  return out;
}

}  // namespace ccm::clients
