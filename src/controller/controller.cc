#include "controller/controller.h"

#include <sys/stat.h>

#include <map>

#include "base/log.h"

namespace meshd::controller {

Parsed<bool> Controller::start(const Options& options, uint64_t now_ms) {
  auto opened = store_.open(options.data_dir, &registry_);
  if (!opened) return invalid(opened.error());
  LOG_INFO("controller", "%s: %zu records replayed, %zu entries", store_.path().c_str(), opened->records,
           registry_.size());
  if (!options.registry_file.empty()) {
    file_.emplace(options.registry_file);
    // Entries the file no longer has were persisted under its owner: the
    // first load must know them to send their tombstones.
    if (auto r = load_file(now_ms); !r)
      LOG_ERROR("controller", "%s; serving the persisted registry until the file is fixed", r.error().c_str());
  }
  return true;
}

Parsed<Changes> Controller::load_file(uint64_t now_ms) {
  struct stat st {};
  if (stat(file_->path().c_str(), &st) != 0)
    return invalid("cannot read registry file " + file_->path() + ": " + strerror(errno));
  file_mtime_ns_ = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  file_size_ = static_cast<uint64_t>(st.st_size);
  auto changes = file_->reload(now_ms);
  if (!changes) return invalid(changes.error());
  std::vector<proto::Entry> all = std::move(*changes);
  if (file_loads_++ == 0) {
    // After a restart the file may no longer list entries it owned before
    // (edited while the controller was down): they go now. On the first
    // load every entry of the file is in `all`, so "not in all" means gone.
    const std::string owner = file_->owner();
    std::vector<proto::Entry> gone;
    registry_.for_each([&](const proto::Entry& e) {
      if (e.owner() != owner || e.tombstone()) return;
      for (const auto& c : all)
        if (key_of(c) == key_of(e)) return;
      proto::Entry t;
      t.set_service(e.service());
      t.set_endpoint(e.endpoint());
      t.set_owner(owner);
      t.set_version(std::max(e.version() + 1, now_ms));
      t.set_tombstone(true);
      t.set_updated_unix_ms(now_ms);
      gone.push_back(std::move(t));
    });
    all.insert(all.end(), gone.begin(), gone.end());
  }
  LOG_INFO("controller", "%s: loaded (%zu changes)", file_->path().c_str(), all.size());
  return apply(all, now_ms);
}

Parsed<Changes> Controller::poll_file(uint64_t now_ms) {
  if (!file_) return Changes{};
  struct stat st {};
  if (stat(file_->path().c_str(), &st) != 0) return Changes{};  // being replaced: look again next time
  int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  if (mtime == file_mtime_ns_ && static_cast<uint64_t>(st.st_size) == file_size_) return Changes{};
  return load_file(now_ms);
}

Parsed<Changes> Controller::apply(const std::vector<proto::Entry>& entries, uint64_t) {
  std::map<std::string, proto::ServiceUpdate> by_service;
  for (const auto& e : entries) {
    if (const proto::Entry* old = registry_.find(key_of(e)); old != nullptr && !supersedes(e, *old)) continue;
    // On disk before it counts: a crash after this line replays it.
    if (auto r = store_.append(e); !r) return invalid(r.error());
    registry_.apply(e);
    proto::ServiceUpdate& u = by_service[e.service()];
    u.set_service(e.service());
    if (e.endpoint().empty()) {
      if (!e.tombstone()) *u.mutable_definition() = e.definition();
    } else if (e.tombstone()) {
      u.add_removed(e.endpoint());
    } else {
      *u.add_upserted() = e.address_of();
    }
  }
  Changes out;
  for (auto& [name, u] : by_service) {
    u.set_exists(!registry_.service(name).empty());
    out.push_back(std::move(u));
  }
  return out;
}

proto::ServiceUpdate Controller::snapshot(const std::string& service) const {
  proto::ServiceUpdate u;
  u.set_service(service);
  u.set_snapshot(true);
  auto entries = registry_.service(service);
  u.set_exists(!entries.empty());
  for (const proto::Entry* e : entries) {
    if (e->endpoint().empty())
      *u.mutable_definition() = e->definition();
    else
      *u.add_upserted() = e->address_of();
  }
  return u;
}

proto::ServiceList Controller::services() const {
  proto::ServiceList list;
  proto::ServiceSummary* current = nullptr;
  registry_.for_each([&](const proto::Entry& e) {
    if (e.tombstone()) return;
    if (current == nullptr || current->definition().name() != e.service()) {
      current = list.add_services();
      current->mutable_definition()->set_name(e.service());
    }
    if (e.endpoint().empty()) {
      *current->mutable_definition() = e.definition();
      current->set_owner(e.owner());
    } else {
      current->set_endpoints(current->endpoints() + 1);
    }
  });
  return list;
}

}  // namespace meshd::controller
