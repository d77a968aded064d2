#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "domain/result.h"
#include "domain/time.h"
#include "domain/worker.h"

namespace ccm::ports {

// The overall state of a lab on a CML worker (CML's `States`).
enum class CmlLabState {
  kDefinedOnCore,  // imported, or wiped: nothing runs, nothing persists
  kStopped,        // stopped, node disks kept
  kStarted,        // running
};

// A lab on a CML worker, as GET /labs/{id} describes it.
struct CmlLab {
  std::string id;
  std::string title;        // lab_title
  std::string description;  // lab_description ("" when CML gives none)
  std::optional<Timestamp> created;  // absent when CML does not give it (or not as RFC 3339)
};

// The mark ImportLab writes as the first line of the description of every lab it creates:
// "ccm " and the lab's title ("ccm lablet <instance id>"). Only a lab whose description
// starts with a mark was created by ccm; ccm removes no other lab on its own initiative.
inline std::string LabMark(std::string_view title) { return "ccm " + std::string(title); }

// A lab to import: the definition's lab, with its ${PORT_...} placeholders, and the same lab
// with the instance's ports written in (domain::RewriteLab).
struct LabToImport {
  std::string_view definition_yaml;
  const domain::PortMap& ports;
  std::string yaml;
};

// A CML worker as its client reaches it: where, and which certificates verify it over https.
struct CmlTarget {
  // A URL alone is verified with the client's own trust (CML_CA_FILE or the system's store).
  CmlTarget(std::string cml_url, std::string cml_ca_pem = "") : url(std::move(cml_url)), ca_pem(std::move(cml_ca_pem)) {}
  std::string url;     // the worker's cml_url
  std::string ca_pem;  // the worker's cml_ca_pem; empty: the client's own trust
};

// The target of `w`: its cml_url and cml_ca_pem.
inline CmlTarget CmlTargetOf(const domain::Worker& w) { return {w.cml_url, w.cml_ca_pem}; }

// The REST API of the CML workers (CML 2.9, base path /api/v0 under the worker's cml_url).
// Every call names the worker by its target. Certificates are always verified over https:
// a worker whose certificate the target's trust does not verify is unavailable. Thread-safe.
// Errors of every call: unavailable when the worker cannot be reached or fails (5xx, 408,
// 429); not_found when the lab does not exist; invalid_argument when CML refuses the request.
class CmlWorkers {
 public:
  virtual ~CmlWorkers() = default;
  // POST /import with the lab (CML YAML, converted to CML's JSON topology); the new lab id.
  // The lab is titled `title`, and its description starts with the line LabMark(title) (the
  // topology's own description, if any, follows on the next lines).
  virtual Result<std::string> ImportLab(const CmlTarget& cml, const std::string& lab_yaml,
                                        const std::string& title) = 0;
  // ImportLab of `lab.yaml`, a lab written from a definition's lab and an instance's ports. An
  // adapter may convert the many labs of one definition faster from the definition's lab, to
  // the same topology; by default, ImportLab.
  virtual Result<std::string> ImportLabOf(const CmlTarget& cml, const LabToImport& lab, const std::string& title) {
    return ImportLab(cml, lab.yaml, title);
  }
  // GET /labs?show_all=true, then GET /labs/{id} for each: every lab of every user, in the
  // order CML lists them. A lab deleted between the two calls is left out; any other failure
  // of either call fails the whole listing.
  virtual Result<std::vector<CmlLab>> ListLabs(const CmlTarget& cml) = 0;
  // PUT /labs/{id}/start.
  virtual Status StartLab(const CmlTarget& cml, const std::string& lab_id) = 0;
  // GET /labs/{id}/state.
  virtual Result<CmlLabState> LabState(const CmlTarget& cml, const std::string& lab_id) = 0;
  // PUT /labs/{id}/stop.
  virtual Status StopLab(const CmlTarget& cml, const std::string& lab_id) = 0;
  // PUT /labs/{id}/wipe: the node disks are erased (the lab must be stopped).
  virtual Status WipeLab(const CmlTarget& cml, const std::string& lab_id) = 0;
  // DELETE /labs/{id}.
  virtual Status DeleteLab(const CmlTarget& cml, const std::string& lab_id) = 0;
};

}  // namespace ccm::ports
