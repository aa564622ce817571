//! Serving the official browser client (`<path>socket.io.js` and friends), as the reference does
//! with `serveClient`: an allow-list of file names, a quoted ETag of the client's version, 304 on a
//! matching `If-None-Match`.

use std::collections::HashMap;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use http::{HeaderMap, Response, StatusCode};

/// The only names served.
pub const CLIENT_FILES: [&str; 8] = [
    "socket.io.esm.min.js",
    "socket.io.esm.min.js.map",
    "socket.io.js",
    "socket.io.js.map",
    "socket.io.min.js",
    "socket.io.min.js.map",
    "socket.io.msgpack.min.js",
    "socket.io.msgpack.min.js.map",
];

/// The files of the client bundle, held in memory (the core does no I/O: the runtime reads them).
#[derive(Clone, Debug)]
pub struct ClientBundle {
    etag: String,
    files: HashMap<&'static str, Bytes>,
}

impl ClientBundle {
    /// A bundle of the client `version`; files whose name is not in [`CLIENT_FILES`] are ignored.
    pub fn new(version: &str, files: impl IntoIterator<Item = (String, Bytes)>) -> ClientBundle {
        let files = files
            .into_iter()
            .filter_map(|(name, data)| {
                CLIENT_FILES
                    .iter()
                    .find(|allowed| **allowed == name)
                    .map(|allowed| (*allowed, data))
            })
            .collect();
        ClientBundle {
            etag: format!("\"{version}\""),
            files,
        }
    }

    /// How many files it holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it holds no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The answer for file `name`, if it is one of the bundle's.
    pub(crate) fn respond(&self, name: &str, headers: &HeaderMap) -> Option<Response<Bytes>> {
        let data = self.files.get(name)?;
        let weak = format!("W/{}", self.etag);
        let matches = headers.get(IF_NONE_MATCH).is_some_and(|v| {
            v.as_bytes() == self.etag.as_bytes() || v.as_bytes() == weak.as_bytes()
        });
        let mut response = Response::new(Bytes::new());
        if matches {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return Some(response);
        }
        *response.body_mut() = data.clone();
        let h = response.headers_mut();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=0"));
        let kind = if name.ends_with(".map") {
            "application/json; charset=utf-8"
        } else {
            "application/javascript; charset=utf-8"
        };
        h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
        if let Ok(etag) = HeaderValue::from_str(&self.etag) {
            h.insert(ETAG, etag);
        }
        Some(response)
    }
}
