#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

// What POST /api/v1/events answers about each event it was given.
namespace ccm::wire {

// One event's receipt: accepted (status 202) with its outcome, or refused with the fields of
// the problem that says why.
struct EventReceipt {
  std::string id = {};       // the event's id
  int status = 202;          // 202 accepted; otherwise the problem's status (422, 409, ...)
  std::string outcome = {};  // when accepted: applied, duplicate, ignored or stale
  std::string title = {};    // when refused: the problem's title,
  std::string detail = {};   //   its detail,
  std::string field = {};    //   the field it names (empty: none),
  std::string code = {};     //   and the error's code (invalid_argument, not_found, conflict, ...)

  bool accepted() const { return status == 202; }
};

// {id, status, outcome} when accepted, else {id, status, title, detail, field?, code?}.
nlohmann::json ToJson(const EventReceipt& receipt);
// A batch's answer: {"results": [receipt, ...]}, in the order of the batch.
nlohmann::json ToJson(const std::vector<EventReceipt>& receipts);

}  // namespace ccm::wire
