//! Listings a registry answers in pages linked by `Link: <...>; rel="next"`
//! (tag lists, the referrers API): read page by page under one set of
//! bounds, so that a registry whose pages loop or never end cannot keep a
//! command reading.

use std::collections::HashSet;
use std::ops::ControlFlow;

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode, Url};

use super::client::Request;
use super::error::{ErrorContext, ErrorKind, RegistryError};
use super::headers::{parse_next_link, resolve_location};
use super::repo::Repo;
use super::transport::auth::pull_scope;
use super::transport::limits::{MAX_LIST, MAX_LIST_PAGE, MAX_LIST_PAGES};

/// One paged listing: what it is called in errors, and what it asks for.
pub(crate) struct Listing<'a> {
    /// `the tag list`, `the referrers index`.
    pub what: &'a str,
    pub first: Url,
    pub accept: Option<&'static str>,
    /// Answers to the first page that mean the listing is not there.
    pub absent: &'a [StatusCode],
}

impl Repo<'_> {
    /// GET every page of `listing` in order, handing each page's body to
    /// `page`, which may stop the reading (`Break`: the answer is not a
    /// listing after all) or find it broken (`Err`: what is wrong with it,
    /// a protocol error of this registry). `Ok(false)` when the first page
    /// was one of the `absent` answers or `page` stopped. A page over 4 MiB,
    /// more than 64 MiB or 1000 pages in all, or a link back to a page
    /// already read is an error.
    pub(crate) async fn read_pages(
        &self,
        listing: Listing<'_>,
        c: &ErrorContext,
        mut page: impl FnMut(Vec<u8>) -> Result<ControlFlow<()>, String>,
    ) -> Result<bool, RegistryError> {
        let endless = |why: String| {
            RegistryError::new(
                c.clone(),
                ErrorKind::Protocol(format!("{} does not end: {why}", listing.what)),
            )
        };
        let mut url = listing.first;
        let mut seen = HashSet::from([url.to_string()]);
        let mut bytes = 0;
        for n in 1..=MAX_LIST_PAGES {
            let mut req = Request::new(
                Method::GET,
                url.clone(),
                vec![pull_scope(self.repository())],
            );
            if let Some(accept) = listing.accept {
                req = req.header(ACCEPT, accept);
            }
            let resp = self.send(req, c).await?;
            if n == 1 && listing.absent.contains(&resp.status) {
                return Ok(false);
            }
            if resp.status != StatusCode::OK {
                return Err(resp.into_error(c.clone()).await);
            }
            let next = resp.header("link").and_then(parse_next_link);
            let answered = resp.url.clone();
            let what = format!("a page of {}", listing.what);
            let body = resp
                .bytes_limited(MAX_LIST_PAGE, &what)
                .await
                .map_err(|k| RegistryError::new(c.clone(), k))?;
            bytes += body.len();
            if bytes > MAX_LIST {
                return Err(endless(format!("more than {MAX_LIST} bytes in {n} pages")));
            }
            let read = page(body)
                .map_err(|why| RegistryError::new(c.clone(), ErrorKind::Protocol(why)))?;
            if read.is_break() {
                return Ok(false);
            }
            let Some(next) = next else {
                return Ok(true);
            };
            url = resolve_location(&answered, &next)
                .map_err(|e| RegistryError::new(c.clone(), ErrorKind::Protocol(e)))?;
            if !seen.insert(url.to_string()) {
                return Err(endless(format!(
                    "page {n} links back to a page already read"
                )));
            }
        }
        Err(endless(format!("more than {MAX_LIST_PAGES} pages")))
    }
}
