// H2Conn: one HTTP/2 connection that the proxy terminates, as either end:
// kServer for an application's connection whose streams meshd takes in and
// balances one by one, kClient for a connection meshd opens to an endpoint
// and multiplexes those streams onto. Framing, HPACK, stream states and
// flow control are nghttp2's (Debian's libnghttp2); this class keeps what
// nghttp2 leaves to its user: the bytes of each stream's outgoing body and
// trailers, and when the peer's window may open again.
//
// Sans I/O, like the taps: the caller feeds what it read (recv), sends what
// pending() returns and says how much went (sent), and hears about streams
// through a Handler. No clock, no exceptions (out of memory is fatal).
//
// Flow control is end to end, stream by stream: received body bytes do not
// reopen the sender's window until the caller consume()s them, which a
// proxy does only once the other side actually sent them on. A stream whose
// reader is slow therefore holds at most its own window (kStreamWindow);
// nothing here buffers more than the peer was allowed to send. A connection
// whose streams belong to many clients gives its connection window back on
// receipt (consume_connection), so one client's slow reads never stall the
// others' streams; a client's own connection keeps both windows end to end.
//
// Bounds on what a peer controls: concurrent streams it may open
// (kMaxConcurrentStreams, advertised and enforced by nghttp2), a header
// list's size (kMaxHeaderList: a request head over it is reported through
// on_head_too_large, a response head or trailers over it reset the stream),
// and every byte of data it sends (the windows above).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct nghttp2_session;

namespace meshd::http {

struct H2Field {
  std::string name;
  std::string value;
};
using H2Fields = std::vector<H2Field>;

// The value of the first field called `name` (exact: HTTP/2 names are
// lowercase on the wire), or an empty view.
std::string_view h2_field(const H2Fields& fields, std::string_view name) noexcept;

// What a header block is to the stream it belongs to.
enum class H2Block : uint8_t {
  kRequest,   // a request head (kServer)
  kInterim,   // a 1xx response head; the final one is still to come (kClient)
  kResponse,  // the final response head (kClient)
  kTrailers,  // trailers, after the body (both)
};

class H2Conn {
 public:
  enum class Role : uint8_t { kServer, kClient };

  static constexpr uint32_t kMaxConcurrentStreams = 256;
  static constexpr uint32_t kStreamWindow = 256 * 1024;
  static constexpr uint32_t kConnectionWindow = 4 * 1024 * 1024;
  static constexpr uint32_t kMaxHeaderList = 64 * 1024;
  // pending() stops pulling frames from nghttp2 past this many unsent bytes.
  static constexpr size_t kOutputHigh = 64 * 1024;

  class Handler {
   public:
    virtual ~Handler() = default;
    // A complete header block. end_stream: the peer's side of the stream
    // ended with it (a request without body, a response without body,
    // trailers).
    virtual void on_headers(int32_t stream, H2Block kind, H2Fields&& fields, bool end_stream) noexcept = 0;
    // A request head larger than kMaxHeaderList (kServer); the stream is
    // still open, for an answer (431).
    virtual void on_head_too_large(int32_t stream) noexcept = 0;
    // Body bytes. Their share of the windows comes back with consume().
    virtual void on_data(int32_t stream, std::span<const uint8_t> bytes) noexcept = 0;
    // The peer ended its side of the stream with a DATA frame.
    virtual void on_data_end(int32_t stream) noexcept = 0;
    // n bytes given to send_data() were framed for the peer: as many may be
    // consumed from where they came.
    virtual void on_data_sent(int32_t stream, size_t n) noexcept = 0;
    // The stream is over, both ways: error 0 when it ended normally, else
    // the RST_STREAM code (sent or received) or the connection's error.
    // Its stream_user() still answers during the call, not after.
    virtual void on_stream_close(int32_t stream, uint32_t error) noexcept = 0;
    // The peer will not process streams above last_stream.
    virtual void on_goaway(int32_t last_stream, uint32_t error) noexcept = 0;
  };

  H2Conn(Role role, Handler* handler) noexcept;
  ~H2Conn();
  H2Conn(const H2Conn&) = delete;
  H2Conn& operator=(const H2Conn&) = delete;

  // Queues the connection preface and SETTINGS. kServer: bytes of the
  // client's preface already read elsewhere (detection) are fed by recv()
  // like any others. False when nghttp2 could not start (out of memory).
  bool start() noexcept;

  // Bytes read from the peer. False when they broke the protocol: a GOAWAY
  // is then queued in pending(), and every stream is closed.
  bool recv(std::span<const uint8_t> bytes) noexcept;

  // Bytes to send to the peer, at most about kOutputHigh; stays valid until
  // sent() or the next call that queues frames.
  std::span<const uint8_t> pending() noexcept;
  void sent(size_t n) noexcept;

  // kClient: opens a stream with this request head (pseudo-headers first).
  // Its body follows with send_data()/end_data() unless end_stream.
  // Returns the stream id, or -1 (no stream may be opened: GOAWAY came, or
  // the peer's concurrent stream limit).
  int32_t submit_request(const H2Fields& head, bool end_stream, void* user) noexcept;
  // kServer: the response head of a stream (an interim 1xx head when its
  // :status says so). Body as above.
  bool submit_response(int32_t stream, const H2Fields& head, bool end_stream) noexcept;
  // Body bytes for a stream whose head was submitted without end_stream:
  // kept until the peer's window lets them go, then reported with
  // on_data_sent.
  bool send_data(int32_t stream, std::span<const uint8_t> bytes) noexcept;
  // The stream's body ends after what was queued, with these trailers
  // (none when empty).
  bool end_data(int32_t stream, H2Fields trailers) noexcept;
  // Received body bytes the caller is done with: the peer may send as many.
  void consume(int32_t stream, size_t n) noexcept;
  // The same, one window at a time: a connection shared by many clients
  // gives its connection window back on receipt, so that a client that
  // does not read stalls only its own streams.
  void consume_connection(size_t n) noexcept;
  void consume_stream(int32_t stream, size_t n) noexcept;
  // RST_STREAM (a protocol error code: NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM...).
  void reset(int32_t stream, uint32_t error) noexcept;
  // Graceful GOAWAY (error 0): streams open now finish, no new one is taken.
  // With an error: the connection ends at once.
  void goaway(uint32_t error) noexcept;

  void* stream_user(int32_t stream) const noexcept;
  void set_stream_user(int32_t stream, void* user) noexcept;
  // Bytes queued for a stream and not yet framed.
  size_t queued(int32_t stream) const noexcept;

  // Streams that may still be opened toward the peer (kClient), counting
  // its limit and those open now; 0 once a GOAWAY came.
  uint32_t streams_available() const noexcept;
  uint32_t open_streams() const noexcept;
  std::vector<int32_t> stream_ids() const;
  // Nothing more to read or write: the connection may be closed.
  bool finished() const noexcept;
  // The peer sent GOAWAY, or one was queued.
  bool going_away() const noexcept { return goaway_seen_ || goaway_sent_; }
  Role role() const noexcept { return role_; }

 private:
  struct Out {
    std::string bytes;  // queued body, from `head` on
    size_t head = 0;
    bool end = false;  // end_data() came
    H2Fields trailers;
    bool deferred = false;  // nghttp2 was told to wait for more
  };
  struct In {
    H2Fields fields;
    size_t size = 0;  // of the block being received
    bool too_large = false;
  };

  struct Stream {
    Out out;
    In in;
    void* user = nullptr;
  };

  friend struct H2ConnCallbacks;
  // Tells nghttp2 a deferred body has bytes (or its end) again.
  void resume(int32_t stream) noexcept;

  Role role_;
  Handler* handler_;
  nghttp2_session* session_ = nullptr;
  std::string out_;  // framed bytes not yet sent, from out_head_ on
  size_t out_head_ = 0;
  // Open streams: on the kServer side from their request head on, on the
  // kClient side from submit_request(), until nghttp2 closes them.
  std::unordered_map<int32_t, Stream> streams_;
  bool goaway_seen_ = false;
  bool goaway_sent_ = false;
  bool failed_ = false;
};

}  // namespace meshd::http
