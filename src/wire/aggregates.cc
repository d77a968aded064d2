#include "wire/aggregates.h"

#include "trace/trace_context.h"

namespace ccm::wire {

using nlohmann::json;
using namespace ccm::domain;

namespace {

// Builds a JSON object key by key, for the lablet and what it holds, which every move, answer
// and listing writes. nlohmann's initializer-list form builds each pair as an array of two
// first and then takes it apart. With times written digit by digit (FormatRfc3339), a lablet's
// JSON tree takes a quarter of the instructions it took.
class ObjectWriter {
 public:
  template <typename V>
  ObjectWriter& Add(const char* key, V&& value) {
    object_.emplace(key, std::forward<V>(value));
    return *this;
  }
  json Done() { return json(std::move(object_)); }

 private:
  json::object_t object_;
};

template <typename T>
json Opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json ResourcesJson(const Resources& r) {
  return {{"cpu_cores", r.cpu_cores}, {"memory_gb", r.memory_gb}, {"storage_gb", r.storage_gb}};
}

Resources ResourcesFrom(const json& j) {
  return {j.at("cpu_cores").get<double>(), j.at("memory_gb").get<double>(), j.at("storage_gb").get<double>()};
}

template <typename State>
json HistoryJson(const std::vector<StateChange<State>>& history) {
  json out = json::array();
  out.get_ref<json::array_t&>().reserve(history.size());
  for (const auto& c : history)
    out.push_back(ObjectWriter()
                      .Add("from", ToString(c.from))
                      .Add("to", ToString(c.to))
                      .Add("at", FormatRfc3339(c.at))
                      .Add("reason", c.reason)
                      .Add("actor", c.actor)
                      .Done());
  return out;
}

Timestamp TimeFrom(const json& j) {
  auto t = ParseRfc3339(j.get<std::string>());
  if (!t) throw std::runtime_error("bad timestamp " + j.get<std::string>());
  return *t;
}

std::optional<Timestamp> OptTimeFrom(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return TimeFrom(j.at(key));
}

std::optional<std::string> OptString(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return j.at(key).get<std::string>();
}

template <typename State, typename Parse>
std::vector<StateChange<State>> HistoryFrom(const json& j, Parse parse) {
  std::vector<StateChange<State>> out;
  for (const auto& c : j) {
    auto from = parse(c.at("from").get<std::string>());
    auto to = parse(c.at("to").get<std::string>());
    if (!from || !to) throw std::runtime_error("bad state in history");
    out.push_back({*from, *to, TimeFrom(c.at("at")), c.at("reason").get<std::string>(),
                   c.at("actor").get<std::string>()});
  }
  return out;
}

PortMap PortsFrom(const json& j) {
  PortMap ports;
  for (const auto& [name, port] : j.items()) ports[name] = port.get<int>();
  return ports;
}

GradingScore ScoreFrom(const json& s) {
  GradingScore score;
  score.total = s.at("total").get<double>();
  score.max = s.at("max").get<double>();
  if (!s.at("passed").is_null()) score.passed = s.at("passed").get<bool>();
  for (const auto& c : s.at("breakdown"))
    score.breakdown.push_back({c.at("criterion").get<std::string>(), c.at("points").get<double>(), c.at("max").get<double>()});
  return score;
}

json ConfigurationJson(const std::string& text, Secrets secrets) {
  json c = json::parse(text, nullptr, false);  // written from a JSON object by the API
  if (!c.is_object()) return json::object();
  if (secrets == Secrets::kRedacted)
    for (auto& [_, v] : c.items()) v = kRedactedValue;
  return c;
}

DeviceAccess AccessFrom(const json& j) {
  DeviceAccess a;
  if (j.contains("authentication")) {
    const json& auth = j.at("authentication");
    DeviceAuthentication d;
    d.scheme = auth.at("scheme").get<std::string>();
    if (auth.contains("properties"))
      for (const auto& [k, v] : auth.at("properties").items()) d.properties[k] = v.get<std::string>();
    a.authentication = std::move(d);
  }
  if (j.contains("configuration")) a.configuration = j.at("configuration").dump();
  return a;
}

json DeviceAccessJson(const DeviceAccessMap& m, Secrets secrets) {
  if (m.empty()) return nullptr;
  json out = {{"nodes", json::object()}};
  if (m.default_access) out["default"] = ToJson(*m.default_access, secrets);
  for (const auto& [label, a] : m.nodes) out["nodes"][label] = ToJson(a, secrets);
  return out;
}

DeviceAccessMap DeviceAccessFrom(const json& j) {
  DeviceAccessMap m;
  if (j.is_null()) return m;
  if (j.contains("default")) m.default_access = AccessFrom(j.at("default"));
  for (const auto& [label, a] : j.at("nodes").items()) m.nodes[label] = AccessFrom(a);
  return m;
}

// The trace id of the trace recorded on `i` (derived: not read back).
json TraceId(const LabletInstance& i) {
  if (i.traceparent.empty()) return nullptr;
  auto t = trace::Parse(i.traceparent, i.tracestate);
  return t ? json(t->trace_id) : json(nullptr);
}

template <typename F>
auto Guard(const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Error::Internal(std::string("stored ") + what + " does not read back: " + e.what());
  }
}

}  // namespace

json OptionalTime(const std::optional<Timestamp>& t) { return t ? json(FormatRfc3339(*t)) : json(nullptr); }

json ToJson(const PortMap& ports) {
  json out = json::object();
  for (const auto& [name, port] : ports) out[name] = port;
  return out;
}

json ToJson(const DeviceAccess& a, Secrets secrets) {
  json out = json::object();
  if (a.authentication) {
    json properties = json::object();
    for (const auto& [k, v] : a.authentication->properties) properties[k] = secrets == Secrets::kShown ? v : kRedactedValue;
    out["authentication"] = {{"scheme", a.authentication->scheme}, {"properties", std::move(properties)}};
  }
  if (!a.configuration.empty()) out["configuration"] = ConfigurationJson(a.configuration, secrets);
  return out;
}

json ToJson(const LabletDefinition& d, Secrets secrets) {
  json affinity = json::array();
  for (auto l : d.license_affinity) affinity.push_back(ToString(l));
  json ports = json::array();
  for (const auto& p : d.port_template) ports.push_back({{"name", p.name}, {"protocol", p.protocol}});
  json resources = ResourcesJson(d.resource_requirements);
  resources["nested_virt"] = d.nested_virt;
  return {{"id", d.id.value},
          {"name", d.name},
          {"version", d.version},
          {"lab_yaml", d.lab_yaml},
          {"lab_yaml_hash", d.lab_yaml_hash},
          {"resource_requirements", std::move(resources)},
          {"license_affinity", std::move(affinity)},
          {"node_count", d.node_count},
          {"port_template", std::move(ports)},
          {"max_duration_minutes", d.max_duration_minutes},
          {"grading_rules_uri", Opt(d.grading_rules_uri)},
          {"device_access", DeviceAccessJson(d.device_access, secrets)},
          {"created_by", d.created_by},
          {"created_at", FormatRfc3339(d.created_at)},
          {"deleted", d.deleted}};
}

json ToJson(const GradingScore& s) {
  json breakdown = json::array();
  for (const auto& c : s.breakdown)
    breakdown.push_back(ObjectWriter().Add("criterion", c.criterion).Add("points", c.points).Add("max", c.max).Done());
  return ObjectWriter()
      .Add("total", s.total)
      .Add("max", s.max)
      .Add("passed", Opt(s.passed))
      .Add("breakdown", std::move(breakdown))
      .Done();
}

json ToJson(const ScoreRecord& r) {
  return ObjectWriter()
      .Add("revision", r.revision)
      .Add("score", ToJson(r.score))
      .Add("event_id", r.event_id.empty() ? json(nullptr) : json(r.event_id))
      .Add("actor", r.actor)
      .Add("at", FormatRfc3339(r.at))
      .Done();
}

json ToJson(const Ending& e) {
  return ObjectWriter()
      .Add("outcome", ToString(e.outcome))
      .Add("stage", e.stage)
      .Add("code", e.code)
      .Add("message", e.message)
      .Done();
}

json ToJson(const LabletInstance& i) {
  ObjectWriter out;
  out.Add("id", i.id.value);
  out.Add("definition_id", i.definition_id.value);
  out.Add("definition_version", i.definition_version);
  out.Add("owner_id", i.owner_id);
  out.Add("reservation_id", Opt(i.reservation_id));
  out.Add("assessment", i.assessment ? ObjectWriter()
                                           .Add("session_id", i.assessment->session_id)
                                           .Add("part_id", i.assessment->part_id)
                                           .Done()
                                     : json(nullptr));
  out.Add("timeslot_start", FormatRfc3339(i.timeslot_start));
  out.Add("timeslot_end", FormatRfc3339(i.timeslot_end));
  out.Add("state", ToString(i.state));
  out.Add("state_history", HistoryJson(i.state_history));
  out.Add("worker_id", i.worker_id ? json(i.worker_id->value) : json(nullptr));
  out.Add("allocated_ports", ToJson(i.allocated_ports));
  out.Add("cml_lab_id", Opt(i.cml_lab_id));
  out.Add("collection", i.collection ? ObjectWriter()
                                           .Add("collection_id", Opt(i.collection->collection_id))
                                           .Add("artifacts_uri", Opt(i.collection->artifacts_uri))
                                           .Done()
                                     : json(nullptr));
  out.Add("grading_score", i.grading_score ? ToJson(*i.grading_score) : json(nullptr));
  json scores = json::array();
  for (const auto& r : i.scores) scores.push_back(ToJson(r));
  out.Add("scores", std::move(scores));
  out.Add("ending", i.ending ? ToJson(*i.ending) : json(nullptr));
  out.Add("pod_assigned", i.pod_assigned);
  out.Add("pod_error", i.pod_error);
  out.Add("pod_due_at", OptionalTime(i.pod_due_at));
  out.Add("pod_failures", i.pod_failures);
  out.Add("last_failure", i.last_failure ? ObjectWriter()
                                               .Add("stage", i.last_failure->stage)
                                               .Add("error_code", i.last_failure->error_code)
                                               .Add("error_message", i.last_failure->error_message)
                                               .Add("retry_possible", i.last_failure->retry_possible)
                                               .Add("at", FormatRfc3339(i.last_failure->at))
                                               .Done()
                                         : json(nullptr));
  out.Add("collection_failures", i.collection_failures);
  out.Add("collection_due_at", OptionalTime(i.collection_due_at));
  out.Add("collection_request_failures", i.collection_request_failures);
  out.Add("collection_request_error", i.collection_request_error);
  out.Add("collection_requested_at", OptionalTime(i.collection_requested_at));
  out.Add("collection_refused", i.collection_refused);
  out.Add("termination_requested", i.termination_requested);
  out.Add("cml_failures", i.cml_failures);
  out.Add("cml_error", i.cml_error);
  out.Add("cml_retry_at", OptionalTime(i.cml_retry_at));
  out.Add("created_at", FormatRfc3339(i.created_at));
  out.Add("scheduled_at", OptionalTime(i.scheduled_at));
  out.Add("started_at", OptionalTime(i.started_at));
  out.Add("terminated_at", OptionalTime(i.terminated_at));
  out.Add("trace_id", TraceId(i));
  out.Add("traceparent", i.traceparent.empty() ? json(nullptr) : json(i.traceparent));
  out.Add("tracestate", i.tracestate.empty() ? json(nullptr) : json(i.tracestate));
  out.Add("version", i.version);
  return out.Done();
}

json ToJson(const Worker& w) {
  const Reservation allocated = w.Allocated();
  json capacity = ResourcesJson(w.capacity);
  capacity["max_nodes"] = w.max_nodes;
  json used = ResourcesJson(allocated.resources);
  used["nodes"] = allocated.nodes;
  json reservations = json::object();
  for (const auto& [id, r] : w.reservations) {
    json rj = ResourcesJson(r.resources);
    rj["nodes"] = r.nodes;
    reservations[id] = std::move(rj);
  }
  json allocations = json::object();
  for (const auto& [id, ports] : w.port_allocations) allocations[id] = ToJson(ports);
  return {{"id", w.id.value},
          {"name", w.name},
          {"template_name", w.template_name},
          {"hostname", w.hostname},
          {"public_ip", w.public_ip},
          {"private_ip", w.private_ip},
          {"cml_url", w.cml_url},
          {"cml_ca_pem", w.cml_ca_pem},
          {"license_type", ToString(w.license_type)},
          {"state", ToString(w.state)},
          {"state_history", HistoryJson(w.state_history)},
          {"capacity", std::move(capacity)},
          {"allocated", std::move(used)},
          {"port_range", {{"start", w.port_range_start}, {"end", w.port_range_end}}},
          {"reservations", std::move(reservations)},
          {"port_allocations", std::move(allocations)},
          {"created_at", FormatRfc3339(w.created_at)},
          {"cloud_id", w.cloud_id},
          {"idle_since", OptionalTime(w.idle_since)},
          {"scaled_up", w.scaled_up},
          {"scale_down", w.scale_down},
          {"version", w.version}};
}

Result<LabletDefinition> DefinitionFromJson(const json& j) {
  return Guard("definition", [&]() -> Result<LabletDefinition> {
    LabletDefinition d;
    d.id = {j.at("id").get<std::string>()};
    d.name = j.at("name").get<std::string>();
    d.version = j.at("version").get<std::string>();
    d.lab_yaml = j.at("lab_yaml").get<std::string>();
    d.lab_yaml_hash = j.at("lab_yaml_hash").get<std::string>();
    d.resource_requirements = ResourcesFrom(j.at("resource_requirements"));
    d.nested_virt = j.at("resource_requirements").at("nested_virt").get<bool>();
    for (const auto& l : j.at("license_affinity")) {
      auto t = ParseLicenseType(l.get<std::string>());
      if (!t) throw std::runtime_error("bad licence");
      d.license_affinity.push_back(*t);
    }
    d.node_count = j.at("node_count").get<int>();
    for (const auto& p : j.at("port_template"))
      d.port_template.push_back({p.at("name").get<std::string>(), p.at("protocol").get<std::string>()});
    d.max_duration_minutes = j.at("max_duration_minutes").get<int>();
    d.grading_rules_uri = OptString(j, "grading_rules_uri");
    if (j.contains("device_access")) d.device_access = DeviceAccessFrom(j.at("device_access"));  // absent before it existed
    d.created_by = j.at("created_by").get<std::string>();
    d.created_at = TimeFrom(j.at("created_at"));
    d.deleted = j.value("deleted", false);
    return d;
  });
}

Result<LabletInstance> InstanceFromJson(const json& j) {
  return Guard("instance", [&]() -> Result<LabletInstance> {
    LabletInstance i;
    i.id = {j.at("id").get<std::string>()};
    i.definition_id = {j.at("definition_id").get<std::string>()};
    i.definition_version = j.at("definition_version").get<std::string>();
    i.owner_id = j.at("owner_id").get<std::string>();
    i.reservation_id = OptString(j, "reservation_id");
    if (const auto& a = j.at("assessment"); !a.is_null())
      i.assessment = AssessmentRef{a.at("session_id").get<std::string>(), a.at("part_id").get<std::string>()};
    i.timeslot_start = TimeFrom(j.at("timeslot_start"));
    i.timeslot_end = TimeFrom(j.at("timeslot_end"));
    auto state = ParseInstanceState(j.at("state").get<std::string>());
    if (!state) throw std::runtime_error("bad state");
    i.state = *state;
    i.state_history = HistoryFrom<InstanceState>(j.at("state_history"), ParseInstanceState);
    if (auto w = OptString(j, "worker_id")) i.worker_id = WorkerId{*w};
    i.allocated_ports = PortsFrom(j.at("allocated_ports"));
    i.cml_lab_id = OptString(j, "cml_lab_id");
    if (const auto& c = j.at("collection"); !c.is_null())
      i.collection = CollectionRef{OptString(c, "collection_id"), OptString(c, "artifacts_uri")};
    if (const auto& s = j.at("grading_score"); !s.is_null()) i.grading_score = ScoreFrom(s);
    if (j.contains("scores")) {
      for (const auto& r : j.at("scores"))
        i.scores.push_back({r.at("revision").get<int>(), ScoreFrom(r.at("score")), OptString(r, "event_id").value_or(""),
                            r.at("actor").get<std::string>(), TimeFrom(r.at("at"))});
    } else if (i.grading_score) {
      // Stored before every score was kept: its one score is the first revision, recorded
      // when the instance left GRADING.
      Timestamp at = TimeFrom(j.at("created_at"));
      for (const auto& h : i.state_history)
        if (h.from == InstanceState::kGrading) at = h.at;
      i.scores.push_back({1, *i.grading_score, "", "", at});
    }
    if (j.contains("ending") && !j.at("ending").is_null()) {
      const auto& e = j.at("ending");
      auto outcome = ParseOutcome(e.at("outcome").get<std::string>());
      if (!outcome) throw std::runtime_error("bad outcome");
      i.ending = Ending{*outcome, e.at("stage").get<std::string>(), e.at("code").get<std::string>(),
                        e.at("message").get<std::string>()};
    }
    i.pod_assigned = j.at("pod_assigned").get<bool>();
    i.pod_error = j.value("pod_error", "");
    i.pod_due_at = OptTimeFrom(j, "pod_due_at");
    i.pod_failures = j.value("pod_failures", 0);
    if (j.contains("last_failure") && !j.at("last_failure").is_null()) {
      const auto& f = j.at("last_failure");
      i.last_failure = FailureRecord{f.at("stage").get<std::string>(), f.at("error_code").get<std::string>(),
                                     f.at("error_message").get<std::string>(), f.at("retry_possible").get<bool>(),
                                     TimeFrom(f.at("at"))};
    }
    i.collection_failures = j.value("collection_failures", 0);
    i.collection_due_at = OptTimeFrom(j, "collection_due_at");
    i.collection_request_failures = j.value("collection_request_failures", 0);
    i.collection_request_error = j.value("collection_request_error", "");
    i.collection_requested_at = OptTimeFrom(j, "collection_requested_at");
    i.collection_refused = j.value("collection_refused", false);
    i.termination_requested = j.value("termination_requested", false);
    i.cml_failures = j.value("cml_failures", 0);
    i.cml_error = j.value("cml_error", "");
    i.cml_retry_at = OptTimeFrom(j, "cml_retry_at");
    i.created_at = TimeFrom(j.at("created_at"));
    i.scheduled_at = OptTimeFrom(j, "scheduled_at");
    i.started_at = OptTimeFrom(j, "started_at");
    i.terminated_at = OptTimeFrom(j, "terminated_at");
    // Absent or null in records stored before traces were kept; trace_id is derived.
    if (auto t = j.find("traceparent"); t != j.end() && t->is_string()) i.traceparent = t->get<std::string>();
    if (auto t = j.find("tracestate"); t != j.end() && t->is_string()) i.tracestate = t->get<std::string>();
    i.version = j.at("version").get<std::int64_t>();
    return i;
  });
}

Result<Worker> WorkerFromJson(const json& j) {
  return Guard("worker", [&]() -> Result<Worker> {
    Worker w;
    w.id = {j.at("id").get<std::string>()};
    w.name = j.at("name").get<std::string>();
    w.template_name = j.at("template_name").get<std::string>();
    w.hostname = j.at("hostname").get<std::string>();
    w.public_ip = j.at("public_ip").get<std::string>();
    w.private_ip = j.at("private_ip").get<std::string>();
    w.cml_url = j.at("cml_url").get<std::string>();
    w.cml_ca_pem = j.value("cml_ca_pem", "");  // absent from workers stored before it existed
    auto licence = ParseLicenseType(j.at("license_type").get<std::string>());
    auto state = ParseWorkerState(j.at("state").get<std::string>());
    if (!licence || !state) throw std::runtime_error("bad licence or state");
    w.license_type = *licence;
    w.state = *state;
    w.state_history = HistoryFrom<WorkerState>(j.at("state_history"), ParseWorkerState);
    w.capacity = ResourcesFrom(j.at("capacity"));
    w.max_nodes = j.at("capacity").at("max_nodes").get<int>();
    w.port_range_start = j.at("port_range").at("start").get<int>();
    w.port_range_end = j.at("port_range").at("end").get<int>();
    for (const auto& [id, r] : j.at("reservations").items())
      w.reservations[id] = Reservation{ResourcesFrom(r), r.at("nodes").get<int>()};
    for (const auto& [id, ports] : j.at("port_allocations").items()) w.port_allocations[id] = PortsFrom(ports);
    w.created_at = TimeFrom(j.at("created_at"));
    w.cloud_id = j.value("cloud_id", "");
    w.idle_since = OptTimeFrom(j, "idle_since");
    w.scaled_up = j.value("scaled_up", false);
    w.scale_down = j.value("scale_down", false);
    w.version = j.at("version").get<std::int64_t>();
    return w;
  });
}

}  // namespace ccm::wire
