#include "transport/http_connection.h"

#include <curl/curl.h>

#include <cctype>

#include "trace/trace_context.h"

namespace ccm::transport {

namespace {

// What the callbacks of one transfer write to.
struct Transfer {
  const Request* request;
  Response* response;
};

size_t OnBody(char* data, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  const size_t bytes = size * n;
  if (t->request->on_chunk) return t->request->on_chunk(std::string_view(data, bytes)) ? bytes : 0;
  t->response->body.append(data, bytes);
  return bytes;
}

std::string_view Trim(std::string_view v) {
  const auto first = v.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const auto last = v.find_last_not_of(" \t\r\n");
  return v.substr(first, last - first + 1);
}

bool NameIs(std::string_view name, std::string_view lower) {
  if (name.size() != lower.size()) return false;
  for (size_t i = 0; i < lower.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(name[i])) != lower[i]) return false;
  return true;
}

size_t OnHeader(char* data, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  const std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    // A new answer (after a 1xx): only the final one's headers count.
    t->response->retry_after.clear();
    t->response->headers.clear();
    return size * n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  const std::string_view name = line.substr(0, colon);
  const std::string_view value = Trim(line.substr(colon + 1));
  if (NameIs(name, "retry-after")) t->response->retry_after = value;
  if (t->request->want_headers) {
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    t->response->headers.emplace_back(std::move(lower), value);
  }
  return size * n;
}

int OnProgress(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* t = static_cast<Transfer*>(p);
  return t->request->keep_going() ? 0 : 1;
}

Failure FailureOf(CURLcode rc) {
  switch (rc) {
    case CURLE_OK:
      return Failure::kNone;
    case CURLE_OPERATION_TIMEDOUT:
      return Failure::kTimedOut;
    case CURLE_PEER_FAILED_VERIFICATION:
      return Failure::kTlsPeerUnverified;
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
      return Failure::kTlsLocalFiles;
    case CURLE_WRITE_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
      return Failure::kAborted;
    default:
      return Failure::kOther;
  }
}

}  // namespace

std::string UrlEscape(std::string_view v) {
  // libcurl reads a length of 0 as "up to the NUL", which a view need not have.
  if (v.empty()) return {};
  char* e = curl_easy_escape(nullptr, v.data(), static_cast<int>(v.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

Connection::Connection(ConnectionOptions options) : curl_(curl_easy_init()), options_(std::move(options)) {}
Connection::~Connection() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

Response Connection::Send(const std::string& url, const Request& request) {
  CURL* c = static_cast<CURL*>(curl_);
  // A clean slate for every request; the connection cache survives the reset.
  curl_easy_reset(c);
  Response response;
  Transfer transfer{&request, &response};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
      curl_easy_setopt(c, CURLOPT_POST, 1L);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    }
    if (request.method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(request.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(request.total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  // libcurl's defaults, stated so that no later edit can drop them unnoticed.
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  TlsOptions& tls = options_.tls;
  if (!tls.ca_pem.empty()) {
    curl_blob blob{tls.ca_pem.data(), tls.ca_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
  } else if (!tls.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, tls.ca_file.c_str());
  }
  if (!tls.cert_file.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, tls.cert_file.c_str());
  if (!tls.key_file.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, tls.key_file.c_str());

  curl_slist* list = curl_slist_append(nullptr, "Expect:");
  if (request.headers) {
    std::string line;
    for (const auto& [k, v] : *request.headers) {
      line.assign(k).append(": ").append(v);
      list = curl_slist_append(list, line.c_str());
    }
  }
  // W3C Trace Context: the call is a span of the calling thread's trace, unless the caller
  // set the header itself (the event sink: the event's own).
  const bool own_traceparent = request.headers && request.headers->contains("traceparent");
  if (const trace::TraceContext* current = trace::Current();
      options_.propagate_trace && current && !own_traceparent) {
    const trace::TraceContext span = current->Child();
    list = curl_slist_append(list, ("traceparent: " + span.Format()).c_str());
    if (!span.state.empty() && !(request.headers && request.headers->contains("tracestate")))
      list = curl_slist_append(list, ("tracestate: " + span.state).c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &transfer);
  if (request.keep_going) {
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &transfer);
  }
  // A stream may stay quiet for long: let the kernel notice a peer that went away.
  if (request.on_chunk) curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  char detail[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail);

  const auto started = std::chrono::steady_clock::now();
  const CURLcode rc = curl_easy_perform(c);
  const auto took = std::chrono::steady_clock::now() - started;
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    response.failure = FailureOf(rc);
    response.transport_error = curl_easy_strerror(rc);
    if (detail[0] != '\0') response.transport_error.append(" (").append(detail).append(")");
    response.headers.clear();
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  }
  if (options_.observer) options_.observer(response.status, rc != CURLE_OK, took);
  return response;
}

}  // namespace ccm::transport
