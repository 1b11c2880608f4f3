// SPDX-License-Identifier: MIT
#include "asset_policy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "log.hpp"

namespace pv {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::vector<std::string> split_any(std::string_view s, std::string_view seps) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        std::size_t end = s.find_first_of(seps, start);
        if (end == std::string_view::npos)
            end = s.size();
        std::string_view part = s.substr(start, end - start);
        while (!part.empty() && std::isspace(static_cast<unsigned char>(part.front()))) {
            part.remove_prefix(1);
        }
        while (!part.empty() && std::isspace(static_cast<unsigned char>(part.back()))) {
            part.remove_suffix(1);
        }
        if (!part.empty())
            out.emplace_back(part);
        start = end + 1;
    }
    return out;
}

/// Splits FETCH_ALLOW_HOSTS, keeping bracketed IPv6 literals whole.
std::vector<std::string> split_hosts(std::string_view s) {
    std::vector<std::string> out;
    std::string cur;
    bool in_brackets = false;
    auto flush = [&] {
        auto parts = split_any(cur, " \t");
        for (auto& p : parts) {
            if (p.size() > 2 && p.front() == '[' && p.back() == ']')
                p = p.substr(1, p.size() - 2);
            out.push_back(lower(p));
        }
        cur.clear();
    };
    for (char c : s) {
        if (c == '[')
            in_brackets = true;
        if (c == ']')
            in_brackets = false;
        if (!in_brackets && (c == ',' || c == ':')) {
            flush();
        } else {
            cur.push_back(c);
        }
    }
    flush();
    return out;
}

bool in_v4(std::uint32_t addr, std::uint32_t net, int bits) {
    std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t{0} << (32 - bits);
    return (addr & mask) == (net & mask);
}

constexpr std::uint32_t v4(unsigned a, unsigned b, unsigned c, unsigned d) {
    return (a << 24) | (b << 16) | (c << 8) | d;
}

std::string_view v4_class(std::uint32_t a) {
    if (a == v4(169, 254, 169, 254))
        return "cloud metadata";
    if (in_v4(a, v4(0, 0, 0, 0), 8))
        return "unspecified (0.0.0.0/8)";
    if (in_v4(a, v4(127, 0, 0, 0), 8))
        return "loopback";
    if (in_v4(a, v4(10, 0, 0, 0), 8))
        return "private";
    if (in_v4(a, v4(172, 16, 0, 0), 12))
        return "private";
    if (in_v4(a, v4(192, 168, 0, 0), 16))
        return "private";
    if (in_v4(a, v4(100, 64, 0, 0), 10))
        return "shared (carrier-grade NAT)";
    if (in_v4(a, v4(169, 254, 0, 0), 16))
        return "link-local";
    if (in_v4(a, v4(192, 0, 0, 0), 24))
        return "IETF protocol assignment";
    if (in_v4(a, v4(198, 18, 0, 0), 15))
        return "benchmarking";
    if (in_v4(a, v4(224, 0, 0, 0), 4))
        return "multicast";
    if (in_v4(a, v4(240, 0, 0, 0), 4))
        return "reserved";
    return "";
}

std::string_view v6_class(const in6_addr& a) {
    const unsigned char* b = a.s6_addr;
    static constexpr std::array<unsigned char, 16> kZero{};
    if (std::memcmp(b, kZero.data(), 16) == 0)
        return "unspecified (::)";
    if (std::memcmp(b, kZero.data(), 15) == 0 && b[15] == 1)
        return "loopback";
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64
    // (64:ff9b::a.b.c.d) addresses are judged by the IPv4 address inside.
    bool mapped = std::memcmp(b, kZero.data(), 10) == 0 && b[10] == 0xff && b[11] == 0xff;
    bool compat = std::memcmp(b, kZero.data(), 12) == 0;
    static constexpr std::array<unsigned char, 12> kNat64{0, 0x64, 0xff, 0x9b};
    bool nat64 = std::memcmp(b, kNat64.data(), 12) == 0;
    if (mapped || compat || nat64) {
        std::uint32_t inner = v4(b[12], b[13], b[14], b[15]);
        auto cls = v4_class(inner);
        return cls.empty() && !compat ? "" : (cls.empty() ? "IPv4-compatible" : cls);
    }
    if ((b[0] & 0xfe) == 0xfc)
        return "private (unique local)";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return "site-local";
    if (b[0] == 0xff)
        return "multicast";
    return "";
}

}  // namespace

std::optional<UrlParts> split_url(std::string_view url) {
    auto sep = url.find("://");
    if (sep == std::string_view::npos || sep == 0)
        return std::nullopt;
    UrlParts parts;
    parts.scheme = lower(url.substr(0, sep));
    std::string_view rest = url.substr(sep + 3);
    std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
    auto at = authority.rfind('@');
    if (at != std::string_view::npos)
        authority.remove_prefix(at + 1);
    if (!authority.empty() && authority.front() == '[') {
        auto close = authority.find(']');
        if (close == std::string_view::npos)
            return std::nullopt;
        parts.host = lower(authority.substr(1, close - 1));
    } else {
        parts.host = lower(authority.substr(0, authority.find(':')));
    }
    return parts;
}

std::string_view forbidden_address_class(const sockaddr* addr) {
    if (addr->sa_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
        return v4_class(ntohl(in->sin_addr.s_addr));
    }
    if (addr->sa_family == AF_INET6) {
        return v6_class(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr);
    }
    return "non-IP";
}

std::string address_text(const sockaddr* addr) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (addr->sa_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, buf,
                    sizeof buf);
    } else if (addr->sa_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buf,
                    sizeof buf);
    }
    return buf;
}

AssetPolicy AssetPolicy::from_env() {
    AssetPolicy p;
    if (const char* roots = std::getenv("ASSET_ROOTS"))
        p.set_roots(split_any(roots, ":"));
    if (const char* hosts = std::getenv("FETCH_ALLOW_HOSTS")) {
        p.set_allowed_hosts(split_hosts(hosts));
    }
    return p;
}

void AssetPolicy::set_roots(const std::vector<std::string>& roots) {
    m_roots.clear();
    for (const auto& root : roots) {
        char real[PATH_MAX];
        if (!::realpath(root.c_str(), real)) {
            log::warn("asset root does not exist, ignored", {{"root", root}});
            continue;
        }
        std::string r = real;
        while (r.size() > 1 && r.back() == '/') r.pop_back();
        m_roots.push_back(r);
    }
}

void AssetPolicy::set_allowed_hosts(const std::vector<std::string>& hosts) {
    m_allowed_hosts.clear();
    for (const auto& h : hosts) m_allowed_hosts.push_back(lower(h));
}

bool AssetPolicy::is_local(std::string_view ref) {
    auto sep = ref.find("://");
    return sep == std::string_view::npos || lower(ref.substr(0, sep)) == "file";
}

std::optional<std::string> AssetPolicy::resolve_local(std::string_view ref,
                                                      std::string& out) const {
    std::string path(ref);
    auto sep = ref.find("://");
    if (sep != std::string_view::npos) {
        // file:///abs/path or file://localhost/abs/path; other hosts are remote shares.
        std::string_view rest = ref.substr(sep + 3);
        if (rest.substr(0, 9) == "localhost")
            rest.remove_prefix(9);
        if (rest.empty() || rest.front() != '/')
            return "names a file on another host";
        path = std::string(rest);
        // Limitation: file:// URLs with %-escapes are refused; give such files as plain paths.
        if (path.find('%') != std::string::npos) {
            return "contains %-escapes, which file:// URLs here do not support";
        }
    }
    if (m_roots.empty())
        return "is a local path, but no ASSET_ROOTS are configured";
    if (path.empty() || path.front() != '/')
        return "must be an absolute path";

    char real[PATH_MAX];
    if (!::realpath(path.c_str(), real)) {
        // Say "outside" rather than "missing" for paths that escape the roots
        // lexically, so probing does not reveal which files exist elsewhere.
        return "does not exist or is outside ASSET_ROOTS";
    }
    std::string r = real;
    bool inside = std::any_of(m_roots.begin(), m_roots.end(), [&](const std::string& root) {
        return r == root || (r.size() > root.size() && r.compare(0, root.size(), root) == 0 &&
                             (root == "/" || r[root.size()] == '/'));
    });
    if (!inside)
        return "is outside ASSET_ROOTS";
    struct stat st {};
    if (::stat(r.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return "is not a regular file";
    out = r;
    return std::nullopt;
}

bool AssetPolicy::host_allowed(std::string_view host) const {
    std::string h = lower(host);
    if (h.size() > 2 && h.front() == '[' && h.back() == ']')
        h = h.substr(1, h.size() - 2);
    return std::find(m_allowed_hosts.begin(), m_allowed_hosts.end(), h) != m_allowed_hosts.end();
}

}  // namespace pv
