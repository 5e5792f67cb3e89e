#include "http/h2_conn.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>

namespace meshd::http {

std::string_view h2_field(const H2Fields& fields, std::string_view name) noexcept {
  for (const H2Field& f : fields)
    if (f.name == name) return f.value;
  return {};
}

namespace {

// nghttp2 copies names and values when a block is submitted, so the views
// need only outlive the submit call.
std::vector<nghttp2_nv> to_nv(const H2Fields& fields) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(fields.size());
  for (const H2Field& f : fields) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(), f.value.size(),
                  NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

bool interim_status(const H2Fields& fields) noexcept {
  std::string_view status = h2_field(fields, ":status");
  return status.size() == 3 && status[0] == '1';
}

}  // namespace

// nghttp2's callbacks, as friends of H2Conn; `user` is the connection.
struct H2ConnCallbacks {
  static H2Conn* self(void* user) { return static_cast<H2Conn*>(user); }

  static int begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    H2Conn* c = self(user);
    const int32_t id = frame->hd.stream_id;
    if (c->role_ == H2Conn::Role::kServer && frame->headers.cat == NGHTTP2_HCAT_REQUEST) c->streams_.try_emplace(id);
    auto it = c->streams_.find(id);
    if (it == c->streams_.end()) return 0;  // a stream this end no longer follows: its block is decoded and dropped
    it->second.in = H2Conn::In{};
    return 0;
  }

  static int header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                    const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    H2Conn* c = self(user);
    auto it = c->streams_.find(frame->hd.stream_id);
    if (it == c->streams_.end()) return 0;
    H2Conn::In& in = it->second.in;
    // RFC 9113 §6.5.2's measure of a header list: each field plus 32.
    in.size += namelen + valuelen + 32;
    if (in.size > H2Conn::kMaxHeaderList) {
      in.too_large = true;
      in.fields.clear();
      return 0;
    }
    if (!in.too_large)
      in.fields.push_back({std::string(reinterpret_cast<const char*>(name), namelen),
                           std::string(reinterpret_cast<const char*>(value), valuelen)});
    return 0;
  }

  static int frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    H2Conn* c = self(user);
    const int32_t id = frame->hd.stream_id;
    const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        auto it = c->streams_.find(id);
        if (it == c->streams_.end()) return 0;
        H2Conn::In& in = it->second.in;
        H2Block kind;
        if (c->role_ == H2Conn::Role::kServer)
          kind = frame->headers.cat == NGHTTP2_HCAT_REQUEST ? H2Block::kRequest : H2Block::kTrailers;
        else if (in.fields.empty() || h2_field(in.fields, ":status").empty())
          kind = H2Block::kTrailers;
        else
          kind = interim_status(in.fields) ? H2Block::kInterim : H2Block::kResponse;
        if (in.too_large) {
          in = H2Conn::In{};
          if (kind == H2Block::kRequest)
            c->handler_->on_head_too_large(id);
          else
            nghttp2_submit_rst_stream(c->session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
          return 0;
        }
        H2Fields fields = std::move(in.fields);
        in = H2Conn::In{};
        c->handler_->on_headers(id, kind, std::move(fields), end_stream);
        return 0;
      }
      case NGHTTP2_DATA:
        if (end_stream && c->streams_.count(id) != 0) c->handler_->on_data_end(id);
        return 0;
      case NGHTTP2_GOAWAY:
        c->goaway_seen_ = true;
        c->handler_->on_goaway(frame->goaway.last_stream_id, frame->goaway.error_code);
        return 0;
      default: return 0;
    }
  }

  static int data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len, void* user) {
    H2Conn* c = self(user);
    if (c->streams_.count(id) == 0) {
      // Nobody will consume these: give their window back at once.
      nghttp2_session_consume(session, id, len);
      return 0;
    }
    c->handler_->on_data(id, {data, len});
    return 0;
  }

  static int stream_close(nghttp2_session*, int32_t id, uint32_t error, void* user) {
    H2Conn* c = self(user);
    if (c->streams_.count(id) == 0) return 0;
    // Told first, so that the handler still finds the stream's user.
    c->handler_->on_stream_close(id, error);
    c->streams_.erase(id);
    return 0;
  }

  static ssize_t read_body(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source*, void* user) {
    H2Conn* c = self(user);
    auto it = c->streams_.find(id);
    if (it == c->streams_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // (resets the stream)
    H2Conn::Out& out = it->second.out;
    const size_t n = std::min(length, out.bytes.size() - out.head);
    if (n > 0) std::memcpy(buf, out.bytes.data() + out.head, n);
    out.head += n;
    if (out.head == out.bytes.size()) {
      out.bytes.clear();
      out.head = 0;
    } else if (out.head > H2Conn::kOutputHigh && out.head * 2 > out.bytes.size()) {
      out.bytes.erase(0, out.head);
      out.head = 0;
    }
    if (n == 0 && !out.end) {
      out.deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    if (out.end && out.bytes.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!out.trailers.empty()) {
        std::vector<nghttp2_nv> nv = to_nv(out.trailers);
        if (nghttp2_submit_trailer(session, id, nv.data(), nv.size()) == 0) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        out.trailers.clear();
      }
    }
    if (n > 0) c->handler_->on_data_sent(id, n);
    return static_cast<ssize_t>(n);
  }
};

H2Conn::H2Conn(Role role, Handler* handler) noexcept : role_(role), handler_(handler) {}

H2Conn::~H2Conn() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool H2Conn::start() noexcept {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, H2ConnCallbacks::begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, H2ConnCallbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, H2ConnCallbacks::frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, H2ConnCallbacks::data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, H2ConnCallbacks::stream_close);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cb);
    return false;
  }
  // Windows reopen only as the other side takes the bytes (consume()).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_send_header_block_length(opt, kMaxHeaderList * 2);
  int rv = role_ == Role::kServer ? nghttp2_session_server_new2(&session_, cb, this, opt)
                                  : nghttp2_session_client_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderList},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  // A server must not send ENABLE_PUSH; a client says it takes no pushes.
  const size_t count = role_ == Role::kServer ? 3 : 4;
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, count) != 0) return false;
  return nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow) == 0;
}

bool H2Conn::recv(std::span<const uint8_t> bytes) noexcept {
  if (failed_) return false;
  ssize_t n = nghttp2_session_mem_recv(session_, bytes.data(), bytes.size());
  if (n < 0 || static_cast<size_t>(n) != bytes.size()) {
    failed_ = true;
    nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
    goaway_sent_ = true;
    return false;
  }
  return true;
}

std::span<const uint8_t> H2Conn::pending() noexcept {
  if (out_head_ == out_.size()) {
    out_.clear();
    out_head_ = 0;
  } else if (out_head_ > kOutputHigh) {
    out_.erase(0, out_head_);
    out_head_ = 0;
  }
  while (out_.size() - out_head_ < kOutputHigh) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n <= 0) {
      if (n < 0) failed_ = true;  // only fatal errors (out of memory, a callback's failure) come here
      break;
    }
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  return {reinterpret_cast<const uint8_t*>(out_.data()) + out_head_, out_.size() - out_head_};
}

void H2Conn::sent(size_t n) noexcept { out_head_ = std::min(out_.size(), out_head_ + n); }

int32_t H2Conn::submit_request(const H2Fields& head, bool end_stream, void* user) noexcept {
  if (role_ != Role::kClient || failed_ || streams_available() == 0) return -1;
  std::vector<nghttp2_nv> nv = to_nv(head);
  nghttp2_data_provider body{};
  body.read_callback = H2ConnCallbacks::read_body;
  int32_t id = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(), end_stream ? nullptr : &body, nullptr);
  if (id < 0) return -1;
  Stream& s = streams_[id];
  s.user = user;
  s.out.end = end_stream;
  return id;
}

bool H2Conn::submit_response(int32_t stream, const H2Fields& head, bool end_stream) noexcept {
  auto it = streams_.find(stream);
  if (role_ != Role::kServer || it == streams_.end()) return false;
  std::vector<nghttp2_nv> nv = to_nv(head);
  if (interim_status(head))
    return nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, stream, nullptr, nv.data(), nv.size(), nullptr) == 0;
  nghttp2_data_provider body{};
  body.read_callback = H2ConnCallbacks::read_body;
  if (nghttp2_submit_response(session_, stream, nv.data(), nv.size(), end_stream ? nullptr : &body) != 0) return false;
  it->second.out.end = end_stream;
  return true;
}

void H2Conn::resume(int32_t stream) noexcept {
  auto it = streams_.find(stream);
  if (it == streams_.end() || !it->second.out.deferred) return;
  it->second.out.deferred = false;
  nghttp2_session_resume_data(session_, stream);
}

bool H2Conn::send_data(int32_t stream, std::span<const uint8_t> bytes) noexcept {
  auto it = streams_.find(stream);
  if (it == streams_.end() || it->second.out.end) return false;
  it->second.out.bytes.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  resume(stream);
  return true;
}

bool H2Conn::end_data(int32_t stream, H2Fields trailers) noexcept {
  auto it = streams_.find(stream);
  if (it == streams_.end() || it->second.out.end) return false;
  it->second.out.end = true;
  it->second.out.trailers = std::move(trailers);
  resume(stream);
  return true;
}

void H2Conn::consume(int32_t stream, size_t n) noexcept {
  if (n > 0 && session_ != nullptr) nghttp2_session_consume(session_, stream, n);
}

void H2Conn::consume_connection(size_t n) noexcept {
  if (n > 0 && session_ != nullptr) nghttp2_session_consume_connection(session_, n);
}

void H2Conn::consume_stream(int32_t stream, size_t n) noexcept {
  // (A stream nghttp2 has closed has no window left to give back.)
  if (n > 0 && session_ != nullptr && streams_.count(stream) != 0) nghttp2_session_consume_stream(session_, stream, n);
}

void H2Conn::reset(int32_t stream, uint32_t error) noexcept {
  if (streams_.count(stream) != 0) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, error);
}

void H2Conn::goaway(uint32_t error) noexcept {
  if (session_ == nullptr || goaway_sent_) return;
  goaway_sent_ = true;
  if (error != 0) {
    nghttp2_session_terminate_session(session_, error);
    return;
  }
  // Streams the peer opened so far still get their answers; a client has
  // accepted none (no push), so it names 0.
  int32_t last = role_ == Role::kServer ? nghttp2_session_get_last_proc_stream_id(session_) : 0;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, nullptr, 0);
}

void* H2Conn::stream_user(int32_t stream) const noexcept {
  auto it = streams_.find(stream);
  return it == streams_.end() ? nullptr : it->second.user;
}

void H2Conn::set_stream_user(int32_t stream, void* user) noexcept {
  auto it = streams_.find(stream);
  if (it != streams_.end()) it->second.user = user;
}

size_t H2Conn::queued(int32_t stream) const noexcept {
  auto it = streams_.find(stream);
  return it == streams_.end() ? 0 : it->second.out.bytes.size() - it->second.out.head;
}

uint32_t H2Conn::streams_available() const noexcept {
  if (session_ == nullptr || goaway_seen_ || goaway_sent_ || failed_) return 0;
  uint32_t limit = nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  limit = std::min(limit, kMaxConcurrentStreams);
  // Stream ids are 31 bits and never reused: a long-lived connection ends.
  if (nghttp2_session_get_next_stream_id(session_) > (1u << 30)) return 0;
  const uint32_t open = open_streams();
  return open >= limit ? 0 : limit - open;
}

uint32_t H2Conn::open_streams() const noexcept { return static_cast<uint32_t>(streams_.size()); }

std::vector<int32_t> H2Conn::stream_ids() const {
  std::vector<int32_t> ids;
  ids.reserve(streams_.size());
  for (const auto& [id, s] : streams_) ids.push_back(id);
  return ids;
}

bool H2Conn::finished() const noexcept {
  if (out_head_ != out_.size()) return false;
  if (session_ == nullptr) return true;
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
}

}  // namespace meshd::http
