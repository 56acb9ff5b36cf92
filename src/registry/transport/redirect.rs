//! Redirects, followed by hand so that credentials never leave the
//! registry's origin.
//!
//! reqwest's own redirect policy is off: a `GET` or `HEAD` answered 3xx is
//! sent again to its `Location` here (at most [`MAX_REDIRECTS`] times), and
//! every attempt decides anew whether it may carry `Authorization`: only
//! when it goes to the registry's own origin (scheme, host and port). A blob
//! redirected to a storage host, an absolute upload `Location` on another
//! host, or an https -> http redirect gets no credentials.

use reqwest::{Method, Url};

use super::request::Response;
use crate::registry::headers::same_origin;

/// Redirects followed for one request.
pub const MAX_REDIRECTS: u32 = 5;

/// Whether a request to `url` may carry the registry's `Authorization`.
pub fn may_authorize(url: &Url, registry_base: &Url) -> bool {
    same_origin(url, registry_base)
}

/// Where to go next when `response` redirects a `method` request and
/// `followed` redirects were followed already; `None` to return the answer
/// as it is.
pub fn next_hop(method: &Method, response: &Response, followed: u32) -> Option<Url> {
    if !response.status.is_redirection()
        || !matches!(*method, Method::GET | Method::HEAD)
        || followed >= MAX_REDIRECTS
    {
        return None;
    }
    response.location().and_then(Result::ok)
}
