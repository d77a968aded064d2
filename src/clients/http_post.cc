#include "clients/http_post.h"

#include <curl/curl.h>

#include <cctype>

#include "trace/trace_context.h"

namespace ccm::clients {

namespace {

size_t OnBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

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

std::string UrlEscape(const std::string& v) {
  char* e = curl_easy_escape(nullptr, v.c_str(), static_cast<int>(v.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

std::string Redact(std::string text, std::initializer_list<std::string_view> secrets) {
  for (std::string_view secret : secrets) {
    if (secret.empty()) continue;
    for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos))
      text.replace(pos, secret.size(), "[redacted]");
  }
  return text;
}

HttpPoster::HttpPoster() : curl_(curl_easy_init()) {}
HttpPoster::~HttpPoster() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpAnswer HttpPoster::Send(const std::string& method, const std::string& url,
                            const std::map<std::string, std::string>& headers, const std::string& body,
                            std::chrono::milliseconds connect_timeout, std::chrono::milliseconds total_timeout) {
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);
  HttpAnswer answer;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  if (method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    if (!body.empty() || method == "POST" || method == "PUT") {
      curl_easy_setopt(c, CURLOPT_POST, 1L);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    if (method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  // libcurl's defaults, stated so that no later edit can drop them unnoticed.
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!trust_.ca_pem.empty()) {
    curl_blob blob{trust_.ca_pem.data(), trust_.ca_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
  } else if (!trust_.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, trust_.ca_file.c_str());
  }
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_slist* list = curl_slist_append(nullptr, "Expect:");
  for (const auto& [k, v] : headers) {
    std::string line;
    line.append(k).append(": ").append(v);
    list = curl_slist_append(list, line.c_str());
  }
  // W3C Trace Context: the call is a span of the calling thread's trace, unless the caller
  // set the header itself (the event sink: the event's own).
  if (const trace::TraceContext* current = trace::Current(); current && !headers.contains("traceparent")) {
    const trace::TraceContext span = current->Child();
    list = curl_slist_append(list, ("traceparent: " + span.Format()).c_str());
    if (!span.state.empty() && !headers.contains("tracestate"))
      list = curl_slist_append(list, ("tracestate: " + span.state).c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &answer.retry_after);
  const auto started = std::chrono::steady_clock::now();
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    answer.transport_error = curl_easy_strerror(rc);
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &answer.status);
  }
  tag_.Observe(app::RemoteOutcomeOf(answer.status, rc != CURLE_OK), std::chrono::steady_clock::now() - started);
  return answer;
}

}  // namespace ccm::clients
