#include "http/api.h"

#include <charconv>

#include "cloudevents/http_binding.h"
#include "http/problem.h"
#include "http/request_body.h"
#include "ports/outbox.h"
#include "ports/page.h"
#include "ports/store.h"
#include "trace/trace_context.h"
#include "wire/aggregates.h"
#include "wire/overview.h"
#include "wire/grading_score.h"
#include "wire/pod.h"
#include "wire/receipt.h"

namespace ccm::http {

using nlohmann::json;
using namespace ccm::domain;

namespace {

Response Json(int status, const json& body) {
  Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

Response Fail(const Error& e, const Request& req) { return ErrorResponse(e, req.path); }

template <typename T>
Response Reply(const Result<T>& r, const Request& req, int status = 200) {
  if (!r) return Fail(r.error(), req);
  return Json(status, wire::ToJson(*r));
}

// The answer `deferred` will be settled with.
Response Later(std::shared_ptr<Deferred> deferred) {
  Response answer;
  answer.deferred = std::move(deferred);
  return answer;
}

// Settles `deferred` with `work` run on a handler thread, in the trace current here (the
// request's): for a decision taken again after its commit lost a race.
void ContinueLater(Deferred& deferred, std::function<Response()> work, std::optional<trace::TraceContext> trace) {
  deferred.Continue([work = std::move(work), trace = std::move(trace)] {
    trace::Scope scope(trace);
    return work();
  });
}

// The calling thread's current trace, to be taken to another thread.
std::optional<trace::TraceContext> CurrentTrace() {
  const trace::TraceContext* current = trace::Current();
  return current ? std::optional<trace::TraceContext>(*current) : std::nullopt;
}

template <typename T>
json PageJson(const ports::PageOf<T>& page) {
  json items = json::array();
  for (const auto& item : page.items) items.push_back(wire::ToJson(item));
  return {{"items", std::move(items)}, {"next", page.next.empty() ? json(nullptr) : json(page.next)}};
}

// Who made the request. Until inbound authentication names a subject, every caller is the
// API itself.
std::string ActorOf(const Request& req) { return req.subject.empty() ? "api" : req.subject; }

// What a page's `next` holds, and so what ?after= must be: the last item's id (a UUID, for
// definitions, instances and workers) or its outbox sequence number (events).
enum class Cursor { kId, kSeq };

bool IsCursor(std::string_view s, Cursor kind) {
  if (s.empty()) return true;  // `after=`: from the start
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  if (kind == Cursor::kSeq)
    return s.size() <= 18 && s.find_first_not_of("0123456789") == std::string_view::npos;
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !hex(s[i])) return false;
  }
  return true;
}

// Reads ?limit= and ?after=. Errors: invalid_argument naming "limit", or "after" when it is
// not the `next` of some page of this list (a typo would otherwise read as an empty page).
Result<ports::Page> PageOf(const Request& req, Cursor cursor = Cursor::kId) {
  ports::Page page;
  if (auto it = req.query.find("limit"); it != req.query.end()) {
    int n = 0;
    const auto& s = it->second;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || p != s.data() + s.size() || n < 1 || n > ports::kMaxPageLimit)
      return Error::InvalidArgument("limit must be an integer from 1 to " + std::to_string(ports::kMaxPageLimit),
                                    "limit");
    page.limit = n;
  }
  if (auto it = req.query.find("after"); it != req.query.end()) {
    if (!IsCursor(it->second, cursor))
      return Error::InvalidArgument(std::string("after must be the next value of a previous page (") +
                                        (cursor == Cursor::kSeq ? "a sequence number" : "an id") + "), not '" +
                                        it->second + "'",
                                    "after");
    page.after = it->second;
  }
  return page;
}

Status OnlyQuery(const Request& req, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, _] : req.query)
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return Error::InvalidArgument("query parameter " + key + " is not known", key);
  return {};
}

std::optional<std::string> Query(const Request& req, const char* key) {
  auto it = req.query.find(key);
  return it == req.query.end() ? std::nullopt : std::optional(it->second);
}

Resources ReadResources(FieldReader& r) {
  return {r.Number("cpu_cores"), r.Number("memory_gb"), r.OptNumber("storage_gb").value_or(0)};
}

// ---- definitions ---------------------------------------------------------------------------

// Who may read device access as it is: definitions only a verified ccm.admin, pods a verified
// ccm.operator (or admin); everyone else, and everyone without authentication, reads it
// redacted. The Grading Engine always gets it (app::AssignDuePod).
wire::Secrets SecretsFor(const Request& req, auth::Role role) {
  return req.principal && req.principal->Has(role) ? wire::Secrets::kShown : wire::Secrets::kRedacted;
}

Response ReplyDefinition(const Result<LabletDefinition>& r, const Request& req, int status = 200) {
  if (!r) return Fail(r.error(), req);
  return Json(status, wire::ToJson(*r, SecretsFor(req, auth::Role::kAdmin)));
}

json DefinitionItems(const std::vector<LabletDefinition>& defs, const Request& req) {
  const wire::Secrets secrets = SecretsFor(req, auth::Role::kAdmin);
  json items = json::array();
  for (const auto& d : defs) items.push_back(wire::ToJson(d, secrets));
  return items;
}

// ACCESS = {"authentication"?: {"scheme", "properties"?: {name: string}}, "configuration"?: {}}
// at `path`; the first error goes to `parent`. Errors name the member, never its value.
DeviceAccess ReadAccess(const json& object, const std::string& path, FieldReader& parent) {
  FieldReader r(object, path);
  r.Only({"authentication", "configuration"});
  DeviceAccess access;
  if (const json* auth = r.Object("authentication", false)) {
    FieldReader ar(*auth, path + ".authentication");
    ar.Only({"scheme", "properties"});
    DeviceAuthentication a;
    a.scheme = ar.String("scheme");
    if (const json* properties = ar.Object("properties", false)) {
      for (const auto& [name, value] : properties->items()) {
        if (!value.is_string()) {
          ar.Fail("properties." + name, "must be a string");
          break;
        }
        a.properties[name] = value.get<std::string>();
      }
    }
    r.Merge(ar);
    access.authentication = std::move(a);
  }
  if (const json* configuration = r.Object("configuration", false)) access.configuration = configuration->dump();
  parent.Merge(r);
  return access;
}

// device_access = {"default"?: ACCESS, "nodes"?: {"<node label>": ACCESS}}.
DeviceAccessMap ReadDeviceAccess(const json& object, FieldReader& parent) {
  FieldReader r(object, "device_access");
  r.Only({"default", "nodes"});
  DeviceAccessMap access;
  if (const json* d = r.Object("default", false)) access.default_access = ReadAccess(*d, "device_access.default", r);
  if (const json* nodes = r.Object("nodes", false)) {
    FieldReader nr(*nodes, "device_access.nodes");
    for (const auto& [label, entry] : nodes->items()) {
      if (!entry.is_object()) {
        nr.Fail(label, "must be an object");
        break;
      }
      access.nodes[label] = ReadAccess(entry, "device_access.nodes." + label, nr);
    }
    r.Merge(nr);
  }
  parent.Merge(r);
  return access;
}

Result<DefinitionDraft> ReadDefinitionDraft(const json& body) {
  FieldReader r(body);
  r.Only({"name", "version", "lab_yaml", "resource_requirements", "license_affinity", "max_duration_minutes",
          "grading_rules_uri", "device_access", "created_by"});
  DefinitionDraft d;
  d.name = r.String("name");
  d.version = r.String("version");
  d.lab_yaml = r.String("lab_yaml");
  if (const json* res = r.Object("resource_requirements", true)) {
    FieldReader rr(*res, "resource_requirements");
    rr.Only({"cpu_cores", "memory_gb", "storage_gb", "nested_virt"});
    d.resource_requirements = ReadResources(rr);
    d.nested_virt = rr.Bool("nested_virt", false);
    r.Merge(rr);
  }
  if (const json* aff = r.Array("license_affinity", true)) {
    for (size_t i = 0; i < aff->size(); ++i) {
      const json& v = (*aff)[i];
      auto t = v.is_string() ? ParseLicenseType(v.get<std::string>()) : std::nullopt;
      if (!t) {
        r.Fail("license_affinity[" + std::to_string(i) + "]", "must be PERSONAL, ENTERPRISE or EVALUATION");
        break;
      }
      if (std::find(d.license_affinity.begin(), d.license_affinity.end(), *t) == d.license_affinity.end())
        d.license_affinity.push_back(*t);
    }
  }
  d.max_duration_minutes = static_cast<int>(r.Int("max_duration_minutes", 1, kMaxDurationMinutes));
  d.grading_rules_uri = r.OptString("grading_rules_uri");
  if (const json* access = r.Object("device_access", false)) d.device_access = ReadDeviceAccess(*access, r);
  d.created_by = r.String("created_by");
  if (!r.ok()) return r.error();
  return d;
}

void AddDefinitionRoutes(Router& router, app::DefinitionService& defs) {
  router.Add("POST", "/api/v1/definitions", [&defs](Request& req) {
    auto body = ParseJsonObject(req);
    if (!body) return Fail(body.error(), req);
    auto draft = ReadDefinitionDraft(*body);
    if (!draft) return Fail(draft.error(), req);
    auto created = defs.Create(std::move(draft.value()));
    Response resp = ReplyDefinition(created, req, 201);
    if (created) resp.headers["Location"] = "/api/v1/definitions/" + created->id.value + "?version=" + created->version;
    return resp;
  });
  router.Add("GET", "/api/v1/definitions", [&defs](Request& req) {
    if (auto s = OnlyQuery(req, {"name", "include_deleted", "limit", "after"}); !s) return Fail(s.error(), req);
    auto page = PageOf(req);
    if (!page) return Fail(page.error(), req);
    ports::DefinitionFilter filter;
    filter.name = Query(req, "name");
    if (auto v = Query(req, "include_deleted")) {
      if (*v != "true" && *v != "false")
        return Fail(Error::InvalidArgument("include_deleted must be true or false", "include_deleted"), req);
      filter.include_deleted = *v == "true";
    }
    auto list = defs.List(filter, *page);
    if (!list) return Fail(list.error(), req);
    return Json(200, {{"items", DefinitionItems(list->items, req)},
                      {"next", list->next.empty() ? json(nullptr) : json(list->next)}});
  });
  router.Add("GET", "/api/v1/definitions/{id}", [&defs](Request& req) {
    if (auto s = OnlyQuery(req, {"version"}); !s) return Fail(s.error(), req);
    return ReplyDefinition(defs.Get(DefinitionId{req.params["id"]}, Query(req, "version")), req);
  });
  router.Add("GET", "/api/v1/definitions/{id}/versions", [&defs](Request& req) {
    auto versions = defs.Versions(DefinitionId{req.params["id"]});
    if (!versions) return Fail(versions.error(), req);
    return Json(200, {{"items", DefinitionItems(*versions, req)}});
  });
  router.Add("DELETE", "/api/v1/definitions/{id}", [&defs](Request& req) {
    return ReplyDefinition(defs.Delete(DefinitionId{req.params["id"]}), req);
  });
}

// ---- instances -----------------------------------------------------------------------------

Result<InstanceDraft> ReadInstanceDraft(const json& body) {
  FieldReader r(body);
  r.Only({"definition_id", "definition_version", "owner_id", "reservation_id", "assessment", "timeslot_start",
          "timeslot_end"});
  InstanceDraft d;
  d.definition_id = DefinitionId{r.String("definition_id")};
  d.definition_version = r.OptString("definition_version");
  d.owner_id = r.String("owner_id");
  d.reservation_id = r.OptString("reservation_id");
  if (const json* a = r.Object("assessment", false)) {
    FieldReader ar(*a, "assessment");
    ar.Only({"session_id", "part_id"});
    d.assessment = AssessmentRef{ar.String("session_id"), ar.String("part_id")};
    r.Merge(ar);
  }
  d.timeslot_start = r.Time("timeslot_start");
  d.timeslot_end = r.Time("timeslot_end");
  if (!r.ok()) return r.error();
  return d;
}

struct MoveRequest {
  std::string to;
  std::string reason;
  std::optional<std::int64_t> expected_version;
};

Result<MoveRequest> ReadMove(const Request& req) {
  auto body = ParseJsonObject(req);
  if (!body) return body.error();
  FieldReader r(*body);
  r.Only({"to", "reason", "expected_version"});
  MoveRequest m{r.String("to"), r.OptString("reason").value_or(""), r.OptInt("expected_version", 1, INT64_MAX)};
  if (!r.ok()) return r.error();
  return m;
}

// The Idempotency-Key header, if any: 1 to 255 visible ASCII characters, optionally quoted
// (a structured-field string). Errors: invalid_argument naming the header.
Result<std::optional<std::string>> IdempotencyKeyOf(const Request& req) {
  auto h = req.headers.find("idempotency-key");
  if (h == req.headers.end()) return std::optional<std::string>();
  std::string_view key = h->second;
  if (key.size() >= 2 && key.front() == '"' && key.back() == '"') key = key.substr(1, key.size() - 2);
  const bool visible = std::all_of(key.begin(), key.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  if (key.empty() || key.size() > 255 || !visible)
    return Error::InvalidArgument("Idempotency-Key must be 1 to 255 visible ASCII characters", "Idempotency-Key");
  return std::optional<std::string>(std::string(key));
}

void AddInstanceRoutes(Router& router, app::InstanceService& instances) {
  router.Add("POST", "/api/v1/instances", [&instances](Request& req) {
    auto key = IdempotencyKeyOf(req);
    if (!key) return Fail(key.error(), req);
    auto body = ParseJsonObject(req);
    if (!body) return Fail(body.error(), req);
    auto draft = ReadInstanceDraft(*body);
    if (!draft) return Fail(draft.error(), req);
    app::CreatedInstance created;
    if (*key) {
      auto once = instances.CreateIdempotent(*draft, ActorOf(req), **key);
      if (!once) return Fail(once.error(), req);
      created = std::move(once.value());
    } else {
      auto fresh = instances.Create(*draft, ActorOf(req));
      if (!fresh) return Fail(fresh.error(), req);
      created.instance = std::move(fresh.value());
    }
    Response resp = Json(201, wire::ToJson(created.instance));
    resp.headers["Location"] = "/api/v1/instances/" + created.instance.id.value;
    if (created.replayed) resp.headers["Idempotent-Replayed"] = "true";
    return resp;
  });
  router.Add("GET", "/api/v1/instances", [&instances](Request& req) {
    if (auto s = OnlyQuery(req, {"state", "worker_id", "owner_id", "limit", "after"}); !s) return Fail(s.error(), req);
    auto page = PageOf(req);
    if (!page) return Fail(page.error(), req);
    ports::InstanceFilter filter;
    if (auto s = Query(req, "state")) {
      filter.state = ParseInstanceState(*s);
      if (!filter.state)
        return Fail(Error::InvalidArgument("state must be an instance state such as RUNNING", "state"), req);
    }
    filter.worker_id = Query(req, "worker_id");
    filter.owner_id = Query(req, "owner_id");
    auto list = instances.List(filter, *page);
    if (!list) return Fail(list.error(), req);
    return Json(200, PageJson(*list));
  });
  router.Add("GET", "/api/v1/instances/{id}", [&instances](Request& req) {
    return Reply(instances.Get(InstanceId{req.params["id"]}), req);
  });
  router.Add("DELETE", "/api/v1/instances/{id}", [&instances](Request& req) {
    return Reply(instances.RequestTermination(InstanceId{req.params["id"]}, ActorOf(req)), req, 202);
  });
  router.Add("POST", "/api/internal/instances/{id}/schedule", [&instances](Request& req) {
    auto body = ParseJsonObject(req);
    if (!body) return Fail(body.error(), req);
    FieldReader r(*body);
    r.Only({"worker_id"});
    const std::string worker = r.String("worker_id");
    if (!r.ok()) return Fail(r.error(), req);
    return Reply(instances.Schedule(InstanceId{req.params["id"]}, WorkerId{worker}, ActorOf(req)), req);
  });
  router.Add("POST", "/api/internal/instances/{id}/transition", [&instances](Request& req) {
    auto move = ReadMove(req);
    if (!move) return Fail(move.error(), req);
    const auto to = ParseInstanceState(move->to);
    if (!to) return Fail(Error::InvalidArgument("to must be an instance state such as STOPPING", "to"), req);
    // Answered once the move has committed, without holding a handler thread for the commit.
    // A commit that lost a race (without an expected version) is decided again on a handler
    // thread. `req` lives until the answer is handed back: nothing touches it after the
    // deferred is settled. The answer to a move that commits is made here, before the commit:
    // the commit's thread only hands it on.
    auto deferred = std::make_shared<Deferred>();
    auto answer = std::make_shared<Response>();
    const InstanceId id{req.params["id"]};
    const auto expected = move->expected_version;
    instances.TransitionThen(id, *to, move->reason, ActorOf(req), expected,
                             [&instances, &req, deferred, answer, id, to = *to, reason = move->reason, expected,
                              trace = CurrentTrace()](Result<LabletInstance> moved) {
                               if (moved) return deferred->Complete(std::move(*answer));
                               if (expected || !moved.error().Is(ErrorKind::kStaleVersion))
                                 return deferred->Complete(Fail(moved.error(), req));
                               ContinueLater(
                                   *deferred,
                                   [&instances, &req, id, to, reason] {
                                     return Reply(instances.Transition(id, to, reason, ActorOf(req), std::nullopt), req);
                                   },
                                   trace);
                             },
                             [&answer = *answer](const LabletInstance& committed) {
                               answer = Json(200, wire::ToJson(committed));
                             });
    return Later(std::move(deferred));
  }, Commits::kQueued);
}

// ---- workers -------------------------------------------------------------------------------

Result<WorkerDraft> ReadWorkerDraft(const json& body) {
  FieldReader r(body);
  r.Only({"name", "template_name", "hostname", "public_ip", "private_ip", "cml_url", "cml_ca_pem", "license_type", "capacity",
          "port_range", "state"});
  WorkerDraft d;
  d.name = r.String("name");
  d.template_name = r.OptString("template_name").value_or("");
  d.hostname = r.String("hostname");
  d.public_ip = r.OptString("public_ip").value_or("");
  d.private_ip = r.OptString("private_ip").value_or("");
  d.cml_url = r.String("cml_url");
  d.cml_ca_pem = r.OptString("cml_ca_pem").value_or("");
  const std::string licence = r.String("license_type");
  if (r.ok()) {
    if (auto t = ParseLicenseType(licence)) d.license_type = *t;
    else r.Fail("license_type", "must be PERSONAL, ENTERPRISE or EVALUATION");
  }
  if (const json* c = r.Object("capacity", true)) {
    FieldReader cr(*c, "capacity");
    cr.Only({"cpu_cores", "memory_gb", "storage_gb", "max_nodes"});
    d.capacity = ReadResources(cr);
    d.max_nodes = static_cast<int>(cr.Int("max_nodes", 1, 100000));
    r.Merge(cr);
  }
  if (const json* p = r.Object("port_range", false)) {
    FieldReader pr(*p, "port_range");
    pr.Only({"start", "end"});
    d.port_range_start = static_cast<int>(pr.Int("start", 1, 65535));
    d.port_range_end = static_cast<int>(pr.Int("end", 1, 65535));
    r.Merge(pr);
  }
  if (auto s = r.OptString("state")) {
    auto st = ParseWorkerState(*s);
    if (!st || (*st != WorkerState::kPending && *st != WorkerState::kRunning)) r.Fail("state", "must be PENDING or RUNNING");
    else d.initial_state = *st;
  }
  if (!r.ok()) return r.error();
  return d;
}

void AddWorkerRoutes(Router& router, app::WorkerService& workers) {
  router.Add("POST", "/api/v1/workers", [&workers](Request& req) {
    auto body = ParseJsonObject(req);
    if (!body) return Fail(body.error(), req);
    auto draft = ReadWorkerDraft(*body);
    if (!draft) return Fail(draft.error(), req);
    auto created = workers.Register(std::move(draft.value()), ActorOf(req));
    Response resp = Reply(created, req, 201);
    if (created) resp.headers["Location"] = "/api/v1/workers/" + created->id.value;
    return resp;
  });
  router.Add("GET", "/api/v1/workers", [&workers](Request& req) {
    if (auto s = OnlyQuery(req, {"limit", "after"}); !s) return Fail(s.error(), req);
    auto page = PageOf(req);
    if (!page) return Fail(page.error(), req);
    auto list = workers.List(*page);
    if (!list) return Fail(list.error(), req);
    return Json(200, PageJson(*list));
  });
  router.Add("GET", "/api/v1/workers/{id}", [&workers](Request& req) {
    return Reply(workers.Get(WorkerId{req.params["id"]}), req);
  });
  router.Add("GET", "/api/v1/workers/{id}/capacity", [&workers](Request& req) {
    auto w = workers.Get(WorkerId{req.params["id"]});
    if (!w) return Fail(w.error(), req);
    const json full = wire::ToJson(*w);
    const Reservation used = w->Allocated();
    json free = {{"cpu_cores", w->capacity.cpu_cores - used.resources.cpu_cores},
                 {"memory_gb", w->capacity.memory_gb - used.resources.memory_gb},
                 {"storage_gb", w->capacity.storage_gb - used.resources.storage_gb},
                 {"nodes", w->EffectiveMaxNodes() - used.nodes}};
    return Json(200, {{"worker_id", w->id.value},
                      {"license_type", ToString(w->license_type)},
                      {"capacity", full["capacity"]},
                      {"effective_max_nodes", w->EffectiveMaxNodes()},
                      {"allocated", full["allocated"]},
                      {"free", std::move(free)},
                      {"active_instances", w->ActiveInstances()}});
  });
  router.Add("GET", "/api/v1/workers/{id}/ports", [&workers](Request& req) {
    auto w = workers.Get(WorkerId{req.params["id"]});
    if (!w) return Fail(w.error(), req);
    const json full = wire::ToJson(*w);
    return Json(200, {{"worker_id", w->id.value},
                      {"port_range", full["port_range"]},
                      {"allocations", full["port_allocations"]},
                      {"free_ports", w->FreePorts()}});
  });
  router.Add("GET", "/api/v1/workers/{id}/instances", [&workers](Request& req) {
    auto list = workers.Instances(WorkerId{req.params["id"]});
    if (!list) return Fail(list.error(), req);
    json items = json::array();
    for (const auto& i : *list) items.push_back(wire::ToJson(i));
    return Json(200, {{"items", std::move(items)}});
  });
  router.Add("POST", "/api/internal/workers/{id}/transition", [&workers](Request& req) {
    auto move = ReadMove(req);
    if (!move) return Fail(move.error(), req);
    const auto to = ParseWorkerState(move->to);
    if (!to) return Fail(Error::InvalidArgument("to must be a worker state such as DRAINING", "to"), req);
    return Reply(workers.Transition(WorkerId{req.params["id"]}, *to, move->reason, ActorOf(req),
                                    move->expected_version),
                 req);
  });
}

// ---- events ----------------------------------------------------------------------------

json RecordJson(const ports::OutboxRecord& r) {
  json event = json::parse(r.event.json, nullptr, false);
  return {{"seq", r.seq},
          {"id", r.event.id},
          {"subject", r.event.subject},
          {"type", r.event.type},
          {"time", FormatRfc3339(r.event.time)},
          {"state", ports::ToString(r.state)},
          {"attempts", r.attempts},
          {"next_attempt_at", r.state == ports::DeliveryState::kPending ? json(FormatRfc3339(r.next_attempt_at)) : json(nullptr)},
          {"delivered_at", wire::OptionalTime(r.delivered_at)},
          {"dead_at", wire::OptionalTime(r.dead_at)},
          {"last_error", r.last_error},
          {"event", std::move(event)}};
}

Response RecordsPage(const Result<ports::PageOf<ports::OutboxRecord>>& page, const Request& req) {
  if (!page) return Fail(page.error(), req);
  json items = json::array();
  for (const auto& r : page->items) items.push_back(RecordJson(r));
  return Json(200, {{"items", std::move(items)}, {"next", page->next.empty() ? json(nullptr) : json(page->next)}});
}

Result<std::optional<Timestamp>> QueryTime(const Request& req, const char* key) {
  auto v = Query(req, key);
  if (!v) return std::optional<Timestamp>{};
  auto t = ParseRfc3339(*v);
  if (!t) return Error::InvalidArgument(std::string(key) + " must be an RFC 3339 date-time", key);
  return std::optional<Timestamp>(*t);
}

const char* OutcomeName(app::EventReceiver::Outcome o) {
  switch (o) {
    case app::EventReceiver::Outcome::kApplied: return "applied";
    case app::EventReceiver::Outcome::kDuplicate: return "duplicate";
    case app::EventReceiver::Outcome::kIgnored: return "ignored";
    case app::EventReceiver::Outcome::kStale: return "stale";
  }
  return "applied";
}

// A consumed event's error: a refusal is 422 (bad data, unknown instance) or 409 (an illegal
// move); any other error is the store's or the service's.
int ReceiveStatus(const Error& e) {
  const auto refusal = app::EventReceiver::RefusalOf(e);
  if (!refusal) return StatusFor(e.code);
  return *refusal == app::EventReceiver::Refusal::kIllegalMove ? 409 : 422;
}

// One event's receipt, from what the receiver made of it.
wire::EventReceipt ReceiptOf(const cloudevents::CloudEvent& event, const Result<app::EventReceiver::Outcome>& r) {
  if (r) return {.id = event.id, .status = 202, .outcome = OutcomeName(*r)};
  const int status = ReceiveStatus(r.error());
  return {.id = event.id,
          .status = status,
          .title = ProblemKindOf(status).title,
          .detail = r.error().message,
          .field = r.error().field,
          .code = ToString(r.error().code)};
}

// The answer to a request that carried one event.
Response AnswerOne(const wire::EventReceipt& one, const std::string& path) {
  if (one.accepted()) return Json(202, wire::ToJson(one));
  return ProblemResponse(one.status, one.detail, path, one.field, one.code);
}

// A request's events (one, or a batch's), received in turn: each once the one before it has
// settled, so that a subject's events apply in the batch's order, and no thread waits while
// a commit does.
struct Receipts {
  app::EventReceiver& receiver;
  cloudevents::Decoded decoded;
  std::string path;
  std::optional<trace::TraceContext> trace;
  std::vector<wire::EventReceipt> results = {};

  bool done() const { return results.size() == decoded.events.size(); }
  // Once every event has settled: a lone event's receipt (202) or its problem; a batch's 202,
  // or 207 when one was not accepted, with each one's outcome in the batch's order.
  Response Answer() const {
    if (decoded.mode != cloudevents::Mode::kBatch) return AnswerOne(results.front(), path);
    const bool all_accepted =
        std::all_of(results.begin(), results.end(), [](const wire::EventReceipt& r) { return r.accepted(); });
    return Json(all_accepted ? 202 : 207, wire::ToJson(results));
  }
};

// Receives the next event of `receipts`, and answers once the last has settled. Each event of
// a batch after the first is received on a handler thread, as is one decided again (by
// Receive) because its commit lost a race.
Response ReceiveRest(const std::shared_ptr<Receipts>& receipts) {
  if (receipts->done()) return receipts->Answer();
  // Decode refused any message with an element that is not a valid event, so every element
  // has one.
  const cloudevents::CloudEvent& event = *receipts->decoded.events[receipts->results.size()].event;
  auto deferred = std::make_shared<Deferred>();
  receipts->receiver.ReceiveThen(event, [receipts, deferred, &event](Result<app::EventReceiver::Outcome> r) {
    if (!r && r.error().Is(ErrorKind::kStaleVersion))
      return ContinueLater(
          *deferred,
          [receipts, &event] {
            receipts->results.push_back(ReceiptOf(event, receipts->receiver.Receive(event)));
            return ReceiveRest(receipts);
          },
          receipts->trace);
    receipts->results.push_back(ReceiptOf(event, r));
    // A lone event's answer is small: made here. A batch's is made on a handler thread, which
    // leaves the commit's thread to commit.
    if (receipts->decoded.mode != cloudevents::Mode::kBatch) return deferred->Complete(receipts->Answer());
    ContinueLater(*deferred, [receipts] { return ReceiveRest(receipts); }, receipts->trace);
  });
  return Later(std::move(deferred));
}

void AddCollectionRoutes(Router& router, app::CollectionService& collection) {
  router.Add("POST", "/api/v1/instances/{id}/collect", [&collection](Request& req) {
    auto body = ParseJsonObject(req);
    if (!body) return Fail(body.error(), req);
    FieldReader r(*body);
    r.Only({"triggered_by", "reason"});
    const std::string triggered_by = r.OptString("triggered_by").value_or(ActorOf(req));
    const std::string reason_name = r.OptString("reason").value_or("manual");
    if (!r.ok()) return Fail(r.error(), req);
    const auto reason = app::ParseCollectionReason(reason_name);
    if (!reason)
      return Fail(Error::InvalidArgument("reason must be manual, timeslot_end or assessment_request", "reason"), req);
    return Reply(collection.Collect(InstanceId{req.params["id"]}, triggered_by, *reason), req, 202);
  });
}

void AddReceiverRoutes(Router& router, app::EventReceiver& receiver) {
  router.Add("POST", "/api/v1/events", [&receiver](Request& req) {
    auto decoded = cloudevents::Decode(req.headers, req.body);
    if (!decoded) return ErrorResponse(decoded.error(), req.path);  // 400, or 415 for a content type
    auto receipts = std::make_shared<Receipts>(
        Receipts{.receiver = receiver, .decoded = std::move(*decoded), .path = req.path, .trace = CurrentTrace()});
    receipts->results.reserve(receipts->decoded.events.size());
    return ReceiveRest(receipts);
  }, Commits::kQueued);
  router.Add("POST", "/api/internal/instances/{id}/grading-result", [&receiver](Request& req) {
    auto body = ParseJsonObject(req);
    if (!body) return Fail(body.error(), req);
    for (const auto& [key, _] : body->items())
      if (key != "score" && key != "passed")
        return Fail(Error::InvalidArgument(key + " is not a known field", key), req);
    auto score = wire::ParseGradingScore(*body);
    if (!score) {
      Error e = score.error();
      if (e.field.rfind("data.", 0) == 0) e.field = e.field.substr(5);
      e.message = e.message.rfind("data.", 0) == 0 ? e.message.substr(5) : e.message;
      return Fail(e, req);
    }
    return Reply(receiver.RecordGradingResult(InstanceId{req.params["id"]}, *score, ActorOf(req)), req);
  });
}

// ---- watch ---------------------------------------------------------------------------------

// A watcher's queue as an event stream: `retry` first, then its records, heartbeats and cut,
// or `shutdown` when the server drains.
class WatchStream : public BodyStream {
 public:
  explicit WatchStream(std::shared_ptr<app::Watcher> watcher) : watcher_(std::move(watcher)) {}
  void Start(std::function<void()> wake) override { watcher_->OnReady(std::move(wake)); }
  bool Read(std::string& out) override {
    Opening(out);
    items_.clear();
    watcher_->Take(items_, kReadBytes);
    for (const auto& item : items_) {
      switch (item.kind) {
        case app::WatchItem::Kind::kRecord: out += *item.text; break;
        case app::WatchItem::Kind::kHeartbeat: out += ": heartbeat\n\n"; break;
        case app::WatchItem::Kind::kCut:
          out += "event: cut\ndata: " +
                 json{{"reason", item.reason}, {"resume_after", watcher_->last_taken()}}.dump() + "\n\n";
          return false;
      }
    }
    return true;
  }
  std::string Drain() override {
    std::string out;
    Opening(out);
    return out + "event: shutdown\ndata: {}\n\n";
  }
  void Stop() override { watcher_->Close(); }

 private:
  // What one Read hands the server at most (then it writes, and reads again).
  static constexpr std::size_t kReadBytes = 64 * 1024;
  void Opening(std::string& out) {
    if (opened_) return;
    opened_ = true;
    out += "retry: 2000\n\n";
  }
  std::shared_ptr<app::Watcher> watcher_;
  std::vector<app::WatchItem> items_;
  bool opened_ = false;  // Read and Drain run on the connection's strand, one at a time
};

// The watch query (and Last-Event-ID). Errors: invalid_argument naming the parameter.
Result<std::pair<app::WatchFilter, std::optional<std::int64_t>>> WatchQuery(const Request& req) {
  if (auto s = OnlyQuery(req, {"kind", "state", "worker", "lablet", "after"}); !s) return s.error();
  app::WatchFilter filter;
  if (auto kinds = Query(req, "kind")) {
    std::string_view rest = *kinds;
    for (;;) {
      const auto comma = rest.find(',');
      const std::string_view kind = rest.substr(0, comma);
      if (kind == "instances") filter.instances = true;
      else if (kind == "workers") filter.workers = true;
      else if (kind == "events") filter.events = true;
      else
        return Error::InvalidArgument("kind must be a comma-separated list of instances, workers and events, not '" +
                                          std::string(kind) + "'",
                                      "kind");
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  for (const char* key : {"state", "worker", "lablet"}) {
    auto v = Query(req, key);
    if (v && v->empty()) return Error::InvalidArgument(std::string(key) + " must not be empty", key);
  }
  filter.state = Query(req, "state");
  filter.worker = Query(req, "worker");
  filter.lablet = Query(req, "lablet");
  std::optional<std::int64_t> after;
  const auto read_seq = [&after](std::string_view v, const char* field) -> Status {
    std::int64_t n = 0;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < 0)
      return Error::InvalidArgument(std::string(field) + " must be a sequence number (a non-negative integer), not '" +
                                        std::string(v) + "'",
                                    field);
    after = n;
    return {};
  };
  if (req.headers.count("last-event-id")) {
    if (auto s = read_seq(req.Header("last-event-id"), "Last-Event-ID"); !s) return s.error();
  } else if (auto v = Query(req, "after")) {
    if (auto s = read_seq(*v, "after"); !s) return s.error();
  }
  return std::pair{std::move(filter), after};
}

void AddWatchRoute(Router& router, app::WatchHub* hub) {
  router.Add("GET", "/api/v1/watch", [hub](Request& req) {
    auto query = WatchQuery(req);
    if (!query) return Fail(query.error(), req);
    if (!hub) return Fail(Error::Unavailable("this replica does not serve the watch stream"), req);
    auto watcher = hub->Open(query->first, query->second);
    if (!watcher) {
      Response busy = ProblemResponse(429,
                                      "too many watchers on this replica (CCM_WATCH_MAX_WATCHERS=" +
                                          std::to_string(hub->options().max_watchers) + "); try again later",
                                      req.path, "");
      busy.headers["Retry-After"] = "5";
      return busy;
    }
    Response r;
    r.content_type = "text/event-stream";
    r.headers["Cache-Control"] = "no-store";
    r.headers["X-Accel-Buffering"] = "no";
    r.stream = std::make_shared<WatchStream>(std::move(watcher));
    return r;
  });
}

void AddEventRoutes(Router& router, app::EventService& events, const std::function<Result<std::string>()>& metrics) {
  router.Add("GET", "/api/v1/events", [&events](Request& req) {
    if (auto s = OnlyQuery(req, {"subject", "type", "since", "until", "state", "limit", "after"}); !s)
      return Fail(s.error(), req);
    auto page = PageOf(req, Cursor::kSeq);
    if (!page) return Fail(page.error(), req);
    ports::EventFilter filter;
    filter.subject = Query(req, "subject");
    filter.type = Query(req, "type");
    auto since = QueryTime(req, "since");
    if (!since) return Fail(since.error(), req);
    auto until = QueryTime(req, "until");
    if (!until) return Fail(until.error(), req);
    filter.since = *since;
    filter.until = *until;
    if (auto st = Query(req, "state")) {
      filter.state = ports::ParseDeliveryState(*st);
      if (!filter.state)
        return Fail(Error::InvalidArgument("state must be pending, delivered, dead or held", "state"), req);
    }
    return RecordsPage(events.List(filter, *page), req);
  });
  router.Add("GET", "/api/v1/events/dead-letters", [&events](Request& req) {
    if (auto s = OnlyQuery(req, {"limit", "after"}); !s) return Fail(s.error(), req);
    auto page = PageOf(req, Cursor::kSeq);
    if (!page) return Fail(page.error(), req);
    ports::EventFilter dead;
    dead.state = ports::DeliveryState::kDead;
    return RecordsPage(events.List(dead, *page), req);
  });
  router.Add("POST", "/api/v1/events/dead-letters/{id}/replay", [&events](Request& req) {
    auto r = events.Replay(req.params["id"]);
    if (!r) return Fail(r.error(), req);
    return Json(200, RecordJson(*r));
  });
  router.Add("POST", "/api/v1/events/dead-letters/replay", [&events](Request& req) {
    auto n = events.ReplayAll();
    if (!n) return Fail(n.error(), req);
    return Json(200, {{"replayed", *n}});
  });
  if (!metrics) return;
  router.Add("GET", "/metrics", [metrics](Request& req) {
    auto text = metrics();
    if (!text) return Fail(text.error(), req);
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = std::move(text.value());
    return r;
  });
}

}  // namespace

std::string WatchFrame(const ports::OutboxRecord& record) {
  return "id: " + std::to_string(record.seq) + "\nevent: " + record.event.type + "\ndata: " +
         RecordJson(record).dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

void AddApiRoutes(Router& router, ApiServices s) {
  router.Add("GET", "/health/live", [](Request&) { return Json(200, {{"status", "ok"}}); });
  router.Add("GET", "/health/ready", [&store = s.store, leading = s.leading, draining = s.draining](Request& req) {
    // First: a draining replica is not ready whatever its store says.
    if (draining && draining())
      return ErrorResponse(Error::Unavailable("draining: this replica is stopping and takes no new work; send "
                                              "requests to another replica"),
                           req.path);
    if (auto ok = store.Ping(); !ok) return ErrorResponse(Error::Unavailable(ok.error().message), req.path);
    // Every replica serves; `leader` says which one runs the background work.
    return Json(200, {{"status", "ok"}, {"store", "ok"}, {"leader", leading ? leading() : true}});
  });
  router.Add("GET", "/schemas", [](Request&) {
    json names = json::array();
    for (const auto& [name, _] : EventSchemas()) names.push_back("/schemas/" + name);
    return Json(200, {{"schemas", names}});
  });
  router.Add("GET", "/schemas/{file}", [](Request& req) {
    const auto& schemas = EventSchemas();
    auto it = schemas.find(req.params["file"]);
    if (it == schemas.end())
      return ProblemResponse(404, "no schema " + req.params["file"], req.path, "file");
    Response r;
    r.content_type = "application/schema+json";
    r.body = it->second;
    return r;
  });
  router.Add("GET", "/openapi.json", [](Request&) {
    Response r;
    r.body = OpenApiDocument();
    return r;
  });
  router.Add("GET", "/asyncapi.yaml", [](Request&) {
    Response r;
    r.content_type = "application/yaml";
    r.body = AsyncApiDocument();
    return r;
  });
  AddDefinitionRoutes(router, s.definitions);
  AddInstanceRoutes(router, s.instances);
  AddWorkerRoutes(router, s.workers);
  AddEventRoutes(router, s.events, s.metrics);
  AddWatchRoute(router, s.watch);
  router.Add("GET", "/api/v1/overview", [overview = s.overview](Request& req) {
    if (auto ok = OnlyQuery(req, {}); !ok) return Fail(ok.error(), req);
    if (!overview) return ErrorResponse(Error::Unavailable("the overview is not served by this replica"), req.path);
    auto o = overview->Get();
    if (!o) return Fail(o.error(), req);
    return Json(200, wire::ToJson(*o));
  });
  AddReceiverRoutes(router, s.receiver);
  AddCollectionRoutes(router, s.collection);
  router.Add("POST", "/api/v1/instances/{id}/pod/assign", [&instances = s.instances](Request& req) {
    // No body is needed; an empty JSON object is accepted too.
    if (!req.body.empty()) {
      auto body = ParseJsonObject(req);
      if (!body) return Fail(body.error(), req);
      FieldReader r(*body);
      r.Only({});
      if (!r.ok()) return Fail(r.error(), req);
    }
    return Reply(instances.RequestPodAssignment(InstanceId{req.params["id"]}, ActorOf(req)), req, 202);
  });
  router.Add("GET", "/api/v1/instances/{id}/pod", [&pods = s.pods](Request& req) {
    auto pod = pods.ForInstance(InstanceId{req.params["id"]});
    if (!pod) return Fail(pod.error(), req);
    return Json(200, wire::ToJson(*pod, SecretsFor(req, auth::Role::kOperator)));
  });
}

}  // namespace ccm::http
