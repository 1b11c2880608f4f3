// SPDX-License-Identifier: MIT
// Where assets may come from: local files only under ASSET_ROOTS, and network
// hosts only at public addresses unless FETCH_ALLOW_HOSTS names them.
#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pv {

/// Splits a URL into the parts the fetcher needs; nullopt if it is not one.
struct UrlParts {
    std::string scheme;  // lower case
    std::string host;    // lower case, without brackets for IPv6 literals
};
std::optional<UrlParts> split_url(std::string_view url);

/// Names the class of a non-public address ("loopback", "private",
/// "link-local", "cloud metadata", ...) or returns "" for a public one.
std::string_view forbidden_address_class(const sockaddr* addr);

/// Formats an IPv4 or IPv6 socket address without the port.
std::string address_text(const sockaddr* addr);

class AssetPolicy {
public:
    /// Reads ASSET_ROOTS (colon separated directories) and FETCH_ALLOW_HOSTS
    /// (host names or IP literals, separated by commas or colons; an IPv6
    /// literal must therefore be given in brackets, "[::1]").
    static AssetPolicy from_env();

    /// Roots that do not exist are dropped (with a warning) since nothing can
    /// be under them.
    void set_roots(const std::vector<std::string>& roots);
    void set_allowed_hosts(const std::vector<std::string>& hosts);

    /// True for a reference without a URL scheme or with file://.
    static bool is_local(std::string_view ref);

    /// Resolves a path or file:// URL to its real path, which must be a regular
    /// file inside one of the roots. Returns the problem in words on failure
    /// ("is outside ASSET_ROOTS"), else the real path in `out`.
    std::optional<std::string> resolve_local(std::string_view ref, std::string& out) const;

    /// True when `host` (a name or IP literal from a URL, or an address text)
    /// was listed in FETCH_ALLOW_HOSTS.
    bool host_allowed(std::string_view host) const;

    const std::vector<std::string>& roots() const { return m_roots; }

private:
    std::vector<std::string> m_roots;  // real paths, no trailing '/'
    std::vector<std::string> m_allowed_hosts;
};

}  // namespace pv
