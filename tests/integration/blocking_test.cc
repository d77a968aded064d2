// Nothing that waits holds the server's network threads: reads and writes run on pools of
// their own, so a read stuck on a slow store (or an issuer's keys) holds neither the liveness
// probe, nor the writes, nor the connections. Tested with handlers that block until the test
// lets them go, and with a real `ccm serve` whose etcd member stops answering.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http/server.h"
#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace ccm {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;
using testing::HttpClient;
using testing::HttpResult;

// A server whose handlers for /stuck and /queued/stuck wait until Release, counting those
// waiting; /queued/continue answers with deferred work that waits the same way; every other
// path answers at once with its method and path. With `queueing_threads`, the writes under
// /queued run on the queueing pool.
class StuckHandlers : public ::testing::Test {
 protected:
  void Start(int read_threads, int handler_threads, int queueing_threads = 0) {
    http::ServerOptions o;
    o.port = 0;
    o.io_threads = 2;
    o.read_threads = read_threads;
    o.handler_threads = handler_threads;
    o.inline_paths = {"/live"};
    if (queueing_threads > 0) {
      o.queueing_threads = queueing_threads;
      o.queues_commit = [](const http::Request& r) { return r.method == "POST" && r.path.starts_with("/queued"); };
    }
    server_ = std::make_unique<http::Server>(o, [this](http::Request& r) {
      if (r.path == "/other") {
        std::lock_guard lock(mu_);
        other_ran_before_release_ = !released_;
      }
      if (r.path == "/stuck" || r.path == "/queued/stuck") Wait();
      if (r.path == "/queued/continue") {
        http::Response later;
        later.deferred = std::make_shared<http::Deferred>();
        later.deferred->Continue([this] {
          Wait();
          http::Response resp;
          resp.body = "{\"answered\":\"continued\"}";
          return resp;
        });
        return later;
      }
      http::Response resp;
      resp.body = "{\"answered\":\"" + r.method + " " + r.path + "\"}";
      return resp;
    });
    ASSERT_TRUE(server_->Start());
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override {
    Release();
    for (auto& f : stuck_) f.wait();
    if (server_) server_->Stop();
  }
  // Sends `method` `path` on a connection of its own.
  void SendStuck(const std::string& method, const std::string& path = "/stuck") {
    stuck_.push_back(std::async(std::launch::async, [this, method, path] {
      HttpClient c(base_);
      return c.Send(method, path, "", {});
    }));
  }
  // Waits until Release, counted in waiting().
  void Wait() {
    std::unique_lock lock(mu_);
    ++waiting_;
    released_cv_.wait(lock, [&] { return released_; });
    --waiting_;
  }
  int waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    released_cv_.notify_all();
  }
  bool AnyStuckAnswered() {
    for (auto& f : stuck_)
      if (f.wait_for(0ms) == std::future_status::ready) return true;
    return false;
  }

  std::string base_;
  std::unique_ptr<http::Server> server_;
  std::vector<std::future<HttpResult>> stuck_;
  std::mutex mu_;
  std::condition_variable released_cv_;
  bool released_ = false;
  bool other_ran_before_release_ = false;
  int waiting_ = 0;
};

TEST_F(StuckHandlers, ReadsWaitingOnTheStoreHoldNeitherTheNetworkThreadsNorTheWrites) {
  Start(/*read_threads=*/3, /*handler_threads=*/2);
  // More stuck reads than network threads: each is in its handler at once. (With reads on the
  // network threads, the first two would hold both and the third would never start.)
  for (int n = 0; n < 3; ++n) SendStuck("GET");
  ASSERT_TRUE(Eventually([&] { return waiting() == 3; }, 10s)) << waiting() << " of 3 reads started";

  HttpClient client(base_);
  const auto live = client.Get("/live");
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(live.Json()["answered"], "GET /live");
  const auto write = client.Send("POST", "/write", "{}", {{"Content-Type", "application/json"}});
  ASSERT_EQ(write.status, 200) << write.error;
  EXPECT_EQ(write.Json()["answered"], "POST /write");
  EXPECT_FALSE(AnyStuckAnswered()) << "the probe and the write were answered while every read pool thread waited";

  Release();
  for (auto& f : stuck_) EXPECT_EQ(f.get().status, 200);
  stuck_.clear();
}

TEST_F(StuckHandlers, WritesWaitingForACommitHoldNeitherTheReadsNorTheProbe) {
  Start(/*read_threads=*/2, /*handler_threads=*/2);
  for (int n = 0; n < 2; ++n) SendStuck("POST");
  ASSERT_TRUE(Eventually([&] { return waiting() == 2; }, 10s)) << waiting() << " of 2 writes started";

  HttpClient client(base_);
  for (int n = 0; n < 5; ++n) {
    const auto read = client.Get("/api/v1/instances");
    EXPECT_EQ(read.status, 200);
    EXPECT_EQ(read.Json()["answered"], "GET /api/v1/instances");
  }
  EXPECT_EQ(client.Get("/live").status, 200);
  EXPECT_FALSE(AnyStuckAnswered());

  Release();
  for (auto& f : stuck_) EXPECT_EQ(f.get().status, 200);
  stuck_.clear();
}

TEST_F(StuckHandlers, OnlyTheNamedPathsRunOnTheNetworkThreads) {
  Start(/*read_threads=*/1, /*handler_threads=*/1);
  // The one read thread waits: another read queues behind it, the inline probe does not.
  SendStuck("GET");
  ASSERT_TRUE(Eventually([&] { return waiting() == 1; }, 10s));
  auto queued = std::async(std::launch::async, [this] { return HttpClient(base_).Get("/other"); });
  HttpClient client(base_);
  EXPECT_EQ(client.Get("/live").status, 200);
  // Any method: with the one handler thread waiting too, a write to the named path is answered.
  SendStuck("POST");
  ASSERT_TRUE(Eventually([&] { return waiting() == 2; }, 10s));
  const auto write = client.Send("POST", "/live", "{}", {{"Content-Type", "application/json"}});
  ASSERT_EQ(write.status, 200) << write.error;
  EXPECT_EQ(write.Json()["answered"], "POST /live");
  std::this_thread::sleep_for(200ms);  // time for /other to reach the server
  Release();
  EXPECT_EQ(queued.get().status, 200);
  std::lock_guard lock(mu_);
  EXPECT_FALSE(other_ran_before_release_) << "a read that is not inline ran while the one read thread was taken";
}

TEST_F(StuckHandlers, WritesThatQueueTheirCommitRunOnAPoolOfTheirOwn) {
  Start(/*read_threads=*/1, /*handler_threads=*/1, /*queueing_threads=*/1);
  // The one handler thread waits: a write that queues its commit is still decided.
  SendStuck("POST");
  ASSERT_TRUE(Eventually([&] { return waiting() == 1; }, 10s));
  HttpClient client(base_);
  const auto queued = client.Send("POST", "/queued", "{}", {});
  ASSERT_EQ(queued.status, 200) << queued.error;
  EXPECT_EQ(queued.Json()["answered"], "POST /queued");
  // The one queueing thread waits too: a read is still answered.
  SendStuck("POST", "/queued/stuck");
  ASSERT_TRUE(Eventually([&] { return waiting() == 2; }, 10s));
  EXPECT_EQ(client.Get("/read").Json()["answered"], "GET /read");
  EXPECT_FALSE(AnyStuckAnswered());
  Release();
  for (auto& f : stuck_) EXPECT_EQ(f.get().status, 200);
  stuck_.clear();
}

TEST_F(StuckHandlers, TheDeferredWorkOfAQueuedWriteRunsOnTheHandlerPool) {
  Start(/*read_threads=*/1, /*handler_threads=*/1, /*queueing_threads=*/1);
  // The queued write's further work (a decision taken again, which may wait on a commit)
  // waits on the handler thread and leaves the queueing thread to the next write.
  SendStuck("POST", "/queued/continue");
  ASSERT_TRUE(Eventually([&] { return waiting() == 1; }, 10s));
  HttpClient client(base_);
  const auto next = client.Send("POST", "/queued", "{}", {});
  ASSERT_EQ(next.status, 200) << next.error;
  EXPECT_EQ(next.Json()["answered"], "POST /queued");
  EXPECT_FALSE(AnyStuckAnswered());
  Release();
  for (auto& f : stuck_) {
    const auto continued = f.get();
    EXPECT_EQ(continued.status, 200);
    EXPECT_EQ(continued.Json()["answered"], "continued");
  }
  stuck_.clear();
}

// Writes answered from a commit's thread (a deferred answer) hold no handler thread while they
// wait: with one handler thread, four are in flight at once, and each gets what settled it.
TEST(DeferredAnswers, WaitWithoutAHandlerThreadAndEachGetsWhatSettledIt) {
  std::vector<std::future<HttpResult>> answers;
  std::mutex mu;
  http::ServerOptions o;
  o.port = 0;
  o.io_threads = 1;
  o.handler_threads = 1;
  std::vector<std::shared_ptr<http::Deferred>> waiting, settle;
  bool closing = false;  // the test is ending: answer at once
  http::Server server(o, [&](http::Request& r) {
    http::Response resp;
    std::lock_guard lock(mu);
    if (r.path == "/now" || closing) {
      resp.body = "{\"answered\":\"now\"}";
      return resp;
    }
    resp.deferred = std::make_shared<http::Deferred>();
    waiting.push_back(resp.deferred);
    return resp;
  });
  // Should the test stop early, what is unsettled is dropped (answering 500) before the
  // server stops, which waits for every answer.
  struct DropOnExit {
    std::mutex& mu;
    bool& closing;
    std::vector<std::shared_ptr<http::Deferred>>& waiting;
    std::vector<std::shared_ptr<http::Deferred>>& settle;
    ~DropOnExit() {
      std::lock_guard lock(mu);
      closing = true;
      waiting.clear();
      settle.clear();
    }
  } drop_on_exit{mu, closing, waiting, settle};
  ASSERT_TRUE(server.Start());
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
  for (int n = 0; n < 4; ++n)
    answers.push_back(std::async(std::launch::async, [base] { return HttpClient(base).Send("POST", "/later", "{}", {}); }));
  const auto count = [&] {
    std::lock_guard lock(mu);
    return waiting.size();
  };
  ASSERT_TRUE(Eventually([&] { return count() == 4; }, 10s)) << count() << " of 4 handlers ran";
  EXPECT_EQ(HttpClient(base).Send("POST", "/now", "{}", {}).status, 200) << "the one handler thread was held";
  for (auto& a : answers) EXPECT_EQ(a.wait_for(0ms), std::future_status::timeout) << "answered before it was settled";

  // Settled from threads of the test's own, as a store's committer would.
  {
    std::lock_guard lock(mu);
    settle.swap(waiting);
  }
  const auto answer = [](int status, std::string body) {
    http::Response r;
    r.status = status;
    r.body = std::move(body);
    return r;
  };
  std::thread([&] { settle[0]->Complete(answer(202, "{\"n\":0}")); }).join();
  settle[1]->Continue([&] { return answer(201, "{\"n\":1}"); });  // run on the handler pool
  settle[2].reset();                                                // dropped unsettled: 500
  settle[3]->Complete(answer(409, "{\"n\":3}"));
  settle[3]->Complete(answer(200, "{\"n\":33}"));  // a second settling changes nothing

  std::vector<HttpResult> got;
  for (auto& a : answers) got.push_back(a.get());
  std::multiset<long> statuses;
  for (const auto& g : got) statuses.insert(g.status);
  EXPECT_EQ(statuses, (std::multiset<long>{201, 202, 409, 500}));
  for (const auto& g : got) {
    if (g.status == 500) {
      EXPECT_EQ(g.ContentType(), "application/problem+json");
    }
    if (g.status == 409) {
      EXPECT_EQ(g.Json()["n"], 3);
    }
  }
  server.Stop();
}

// A real `ccm serve` on one etcd member that stops answering (SIGSTOP): its reads wait on the
// store up to the store's request timeout, and meanwhile the liveness probe answers at once.
TEST(SlowStore, AnEtcdThatDoesNotAnswerDelaysNeitherTheLivenessProbeNorTheServer) {
  testing::TempDir dir;
  testing::EtcdCluster etcd(dir.File("etcd"), 1);
  testing::CcmProcess ccm(dir.path(), {{"CCM_STORE", etcd.StoreSetting()}, {"CCM_RECONCILERS", "false"}}, false,
                          dir.File("ccm.log"));
  HttpClient client(ccm.BaseUrl());
  ASSERT_EQ(client.Get("/api/v1/workers").status, 200);

  etcd.Pause(0);
  // More reads than the server has network threads, each on a connection of its own.
  std::vector<std::future<HttpResult>> reads;
  for (int n = 0; n < 4; ++n)
    reads.push_back(std::async(std::launch::async, [&] { return HttpClient(ccm.BaseUrl()).Get("/api/v1/workers"); }));
  std::this_thread::sleep_for(300ms);  // the reads reach ccm and wait on etcd

  for (int n = 0; n < 3; ++n) {
    const auto live = client.Get("/health/live");
    EXPECT_EQ(live.status, 200) << live.body;
  }
  // Another method on the probe's path is answered on the network thread too, by the router
  // alone: 405, naming what the path takes.
  auto post = client.Send("POST", "/health/live", "{}", {{"Content-Type", "application/json"}});
  EXPECT_EQ(post.status, 405) << post.body;
  EXPECT_EQ(post.headers["allow"], "GET, HEAD");
  int answered = 0;
  for (auto& r : reads) answered += r.wait_for(0ms) == std::future_status::ready;
  EXPECT_EQ(answered, 0) << "the liveness probe waited for reads stuck on etcd";

  // The stuck reads end by the store's request timeout with a 503 that says to come back.
  for (auto& r : reads) {
    const auto got = r.get();
    EXPECT_EQ(got.status, 503) << got.body;
    EXPECT_EQ(got.ContentType(), "application/problem+json");
    EXPECT_TRUE(got.headers.count("retry-after"));
  }
  etcd.Resume(0);
  EXPECT_TRUE(Eventually([&] { return client.Get("/api/v1/workers").status == 200; }, 20s));
  EXPECT_EQ(client.Get("/health/ready").status, 200);
}

}  // namespace
}  // namespace ccm
