// SPDX-License-Identifier: MIT
// RAII owners for libcurl handles used by the fetcher, the images API client
// and the uploader.
#pragma once

#include <curl/curl.h>

#include <memory>
#include <stdexcept>

namespace pv {

struct CurlEasyFree {
    void operator()(CURL* h) const noexcept { curl_easy_cleanup(h); }
};
struct CurlMultiFree {
    void operator()(CURLM* h) const noexcept { curl_multi_cleanup(h); }
};
struct CurlSlistFree {
    void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

using CurlEasy = std::unique_ptr<CURL, CurlEasyFree>;
using CurlMulti = std::unique_ptr<CURLM, CurlMultiFree>;
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistFree>;

inline CurlEasy make_curl_easy() {
    CurlEasy h{curl_easy_init()};
    if (!h)
        throw std::runtime_error("curl_easy_init failed");
    return h;
}

/// Appends one header line; the list takes a copy of the string.
inline void append_header(CurlSlist& list, const char* line) {
    curl_slist* grown = curl_slist_append(list.get(), line);
    if (!grown)
        throw std::runtime_error("curl_slist_append failed");
    list.release();
    list.reset(grown);
}

/// Initialises libcurl for the process lifetime of this object (main owns one).
class CurlGlobal {
public:
    CurlGlobal() {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            throw std::runtime_error("curl_global_init failed");
        }
    }
    ~CurlGlobal() { curl_global_cleanup(); }
    CurlGlobal(const CurlGlobal&) = delete;
    CurlGlobal& operator=(const CurlGlobal&) = delete;
};

}  // namespace pv
