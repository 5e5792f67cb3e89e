// Addresses, subnets, durations and sizes as operators write them; the
// intrusive list the workers keep their deadlines in.
#include <catch2/catch.hpp>

#include <vector>

#include "base/addr.h"
#include "base/intrusive_list.h"
#include "base/parse.h"

using namespace meshd;

TEST_CASE("addr: parse and print IPv4 and IPv6") {
  auto a = SocketAddr::parse("10.0.0.5:80");
  REQUIRE(a);
  REQUIRE(a->str() == "10.0.0.5:80");
  REQUIRE(a->port() == 80);
  auto b = SocketAddr::parse("[fd00::1]:443");
  REQUIRE(b);
  REQUIRE(b->is_v6());
  REQUIRE(b->str() == "[fd00::1]:443");
  REQUIRE(b->host() == "fd00::1");
  REQUIRE(SocketAddr::loopback(AF_INET6, 8080).str() == "[::1]:8080");
  REQUIRE(SocketAddr::parse("0.0.0.0:1")->is_unspecified());
  REQUIRE(SocketAddr::parse("127.0.0.9:1")->is_loopback());
  REQUIRE(SocketAddr::parse("[::1]:1")->is_loopback());
  REQUIRE_FALSE(SocketAddr::parse("10.0.0.1:1")->is_loopback());
}

TEST_CASE("addr: bad addresses say why") {
  for (auto* bad : {"", "10.0.0.5", "10.0.0.5:", "10.0.0.5:0", "10.0.0.5:70000", "fd00::1:80", "[fd00::1]80",
                    "host.example:80", "10.0.0.256:1"}) {
    auto r = SocketAddr::parse(bad);
    INFO(bad);
    REQUIRE_FALSE(r);
    REQUIRE(r.error().find(std::string("'") + bad + "'") != std::string::npos);
  }
}

TEST_CASE("cidr: canonical form, families, bad prefixes") {
  REQUIRE(Cidr::parse("10.1.2.3/8")->str() == "10.0.0.0/8");
  REQUIRE(Cidr::parse("192.168.1.7")->str() == "192.168.1.7/32");
  REQUIRE(Cidr::parse("fd00:1:2::9/48")->str() == "fd00:1:2::/48");
  REQUIRE(Cidr::parse("fd00::/8")->family() == AF_INET6);
  REQUIRE_FALSE(Cidr::parse("10.0.0.0/33"));
  REQUIRE_FALSE(Cidr::parse("10.0.0.0/x"));
  REQUIRE_FALSE(Cidr::parse("nope/8"));
}

TEST_CASE("parse: durations, sizes, ports, lists") {
  REQUIRE(*parse_duration_ms("500ms") == 500);
  REQUIRE(*parse_duration_ms("3s") == 3000);
  REQUIRE(*parse_duration_ms("2m") == 120000);
  REQUIRE(*parse_duration_ms("1h") == 3600000);
  REQUIRE_FALSE(parse_duration_ms("30"));
  REQUIRE_FALSE(parse_duration_ms("s"));
  REQUIRE_FALSE(parse_duration_ms("-1s"));
  REQUIRE_FALSE(parse_duration_ms("99999999999999999999s"));
  REQUIRE(*parse_size("16KiB") == 16384);
  REQUIRE(*parse_size("2M") == 2 << 20);
  REQUIRE(*parse_size("100") == 100);
  REQUIRE_FALSE(parse_size("5 pounds"));
  REQUIRE(parse_port_range("8000-8080")->str() == "8000:8080");
  REQUIRE(parse_port_range("22")->str() == "22");
  REQUIRE_FALSE(parse_port_range("9-1"));
  REQUIRE_FALSE(parse_port("0"));
  REQUIRE(split_list(" a, b,,c ") == std::vector<std::string>{"a", "b", "c"});
}

namespace {
struct Timed {
  uint64_t deadline = 0;
  meshd::ListLink link;
};
}  // namespace

TEST_CASE("intrusive list: insert_from_back keeps deadlines in order, ties in arrival order") {
  meshd::IntrusiveList<Timed, &Timed::link> list;
  Timed a{10, {}}, b{30, {}}, c{20, {}}, d{5, {}}, e{20, {}}, f{40, {}};
  for (Timed* t : {&a, &b, &c, &d, &e, &f})
    list.insert_from_back(t, [t](const Timed* other) { return other->deadline > t->deadline; });
  std::vector<Timed*> order;
  list.for_each([&](Timed* t) { order.push_back(t); });
  REQUIRE(order == std::vector<Timed*>{&d, &a, &c, &e, &b, &f});
  // Re-inserting moves an item: c's deadline moves past b's.
  c.deadline = 35;
  list.insert_from_back(&c, [&](const Timed* other) { return other->deadline > c.deadline; });
  order.clear();
  list.for_each([&](Timed* t) { order.push_back(t); });
  REQUIRE(order == std::vector<Timed*>{&d, &a, &e, &b, &c, &f});
  REQUIRE(list.pop_front() == &d);
}
