#include "support/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>

namespace ccm::testing {

namespace {

size_t OnBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t OnHeader(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r\n") + 1);
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

}  // namespace

HttpClient::HttpClient(std::string base_url) : base_(std::move(base_url)), curl_(curl_easy_init()) {}
HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResult HttpClient::Get(const std::string& path) { return Send("GET", path, "", {}); }
HttpResult HttpClient::Delete(const std::string& path) { return Send("DELETE", path, "", {}); }
HttpResult HttpClient::Post(const std::string& path, const std::string& body, const std::string& content_type) {
  std::map<std::string, std::string> headers;
  if (!content_type.empty()) headers["Content-Type"] = content_type;
  return Send("POST", path, body, headers);
}

HttpResult HttpClient::Send(const std::string& method, const std::string& path, const std::string& body,
                            const std::map<std::string, std::string>& headers) {
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);
  HttpResult out;
  const std::string url = base_ + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (method == "GET") curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  if (!body.empty() || method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_slist* list = nullptr;
  // An empty Content-Type header must be removed, not sent as libcurl's form default.
  bool has_type = false;
  for (const auto& [k, v] : headers) {
    list = curl_slist_append(list, (k + ": " + v).c_str());
    if (k == "Content-Type") has_type = true;
  }
  if (!has_type) list = curl_slist_append(list, "Content-Type:");
  if (!bearer_.empty() && !headers.count("Authorization"))
    list = curl_slist_append(list, ("Authorization: Bearer " + bearer_).c_str());
  list = curl_slist_append(list, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &out.headers);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    out.error = curl_easy_strerror(rc);
    return out;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
  return out;
}

}  // namespace ccm::testing
