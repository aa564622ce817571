//! What the engine reads from an HTTP request head and the responses it builds, byte for byte as the
//! reference server writes them.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, UPGRADE};
use http::{HeaderMap, Method, Response, StatusCode};

/// The Engine.IO error codes of the reference (`Server.errors`), sent in the JSON body of a refused
/// request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: `transport` missing, unknown or not enabled.
    UnknownTransport = 0,
    /// 1: `sid` unknown, malformed, or of a closed session.
    UnknownSid = 1,
    /// 2: a handshake with a method other than GET.
    BadHandshakeMethod = 2,
    /// 3: any other bad request.
    BadRequest = 3,
    /// 4: refused by the application (answered with 403).
    Forbidden = 4,
    /// 5: an `EIO` other than 4.
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    /// The reference message for the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status of a refused polling request: 403 for `Forbidden`, 400 otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The query parameters the engine reads. Later duplicates win, as with `Object.fromEntries`.
#[derive(Default, Debug)]
pub(crate) struct Query<'a> {
    pub eio: Option<Cow<'a, str>>,
    pub transport: Option<Cow<'a, str>>,
    pub sid: Option<Cow<'a, str>>,
}

impl<'a> Query<'a> {
    /// Reads the query as `application/x-www-form-urlencoded`. Only a pair holding an escape
    /// (`%` or `+`) is decoded: decoding every pair, and copying the three values out, was half
    /// the engine's work on a polling request (2,800 instructions a request; about 300 now).
    pub fn parse(query: Option<&'a str>) -> Query<'a> {
        let mut q = Query::default();
        let query = query.unwrap_or("");
        // One pass over the bytes: the separators are ASCII, so every cut falls on a char
        // boundary.
        let (mut start, mut eq, mut escaped) = (0, None, false);
        for (i, b) in query.bytes().chain([b'&']).enumerate() {
            match b {
                b'&' => {
                    if i > start {
                        q.read_pair(&query[start..i], eq.map(|eq| eq - start), escaped);
                    }
                    (start, eq, escaped) = (i + 1, None, false);
                }
                b'=' if eq.is_none() => eq = Some(i),
                b'%' | b'+' => escaped = true,
                _ => {}
            }
        }
        q
    }

    /// Reads one non-empty `pair`, with its first `=` at `eq`.
    fn read_pair(&mut self, pair: &'a str, eq: Option<usize>, escaped: bool) {
        let (key, value) = if escaped {
            match form_urlencoded::parse(pair.as_bytes()).next() {
                Some(decoded) => decoded,
                None => return,
            }
        } else {
            match eq {
                Some(eq) => (Cow::Borrowed(&pair[..eq]), Cow::Borrowed(&pair[eq + 1..])),
                None => (Cow::Borrowed(pair), Cow::Borrowed("")),
            }
        };
        let slot = match &*key {
            "EIO" => &mut self.eio,
            "transport" => &mut self.transport,
            "sid" => &mut self.sid,
            _ => return,
        };
        *slot = Some(value);
    }
}

/// Whether the request asks for a protocol upgrade (what makes Node emit `upgrade` instead of
/// `request`).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .map(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
            .unwrap_or(false)
    });
    connection_upgrade && headers.contains_key(UPGRADE)
}

/// The checks the WebSocket library of the reference (`ws`) makes before a 101; the message of the
/// first failure.
pub(crate) fn websocket_handshake_error(
    method: &Method,
    headers: &HeaderMap,
) -> Option<&'static str> {
    if method != Method::GET {
        return Some("Invalid HTTP method");
    }
    let upgrade_ok = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade_ok {
        return Some("Invalid Upgrade header");
    }
    let key_ok = headers
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(valid_websocket_key);
    if !key_ok {
        return Some("Missing or invalid Sec-WebSocket-Key header");
    }
    let version_ok = headers
        .get("sec-websocket-version")
        .is_some_and(|v| v == "13" || v == "8");
    if !version_ok {
        return Some("Missing or invalid Sec-WebSocket-Version header");
    }
    None
}

/// A key is the base64 encoding of 16 bytes: 22 characters and `==`.
fn valid_websocket_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// The reference's origin check: control characters (but tab) and DEL are invalid.
pub(crate) fn origin_is_invalid(headers: &HeaderMap) -> bool {
    headers.get(http::header::ORIGIN).is_some_and(|v| {
        v.as_bytes()
            .iter()
            .any(|&c| (c < 32 && c != b'\t') || c == 127)
    })
}

/// A response with `headers` in this order. Names are `HeaderName` constants: a `&'static str`
/// name is parsed again on every response.
fn response(
    status: StatusCode,
    headers: &[(HeaderName, &'static str)],
    body: Bytes,
) -> Response<Bytes> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    for (name, value) in headers {
        res.headers_mut()
            .append(name, HeaderValue::from_static(value));
    }
    res
}

/// A refused polling request: `{"code":N,"message":"..."}` as JSON.
pub(crate) fn error_response(code: ErrorCode, message: Option<&str>) -> Response<Bytes> {
    let message = message.unwrap_or(code.message());
    let body = format!(
        "{{\"code\":{},\"message\":{}}}",
        code as u8,
        json_string(message)
    );
    response(
        code.status(),
        &[(CONTENT_TYPE, "application/json")],
        Bytes::from(body),
    )
}

/// A refused upgrade request: always 400, the message as `text/html`, and the connection closed.
pub(crate) fn upgrade_error_response(message: &str) -> Response<Bytes> {
    response(
        StatusCode::BAD_REQUEST,
        &[(CONNECTION, "close"), (CONTENT_TYPE, "text/html")],
        Bytes::copy_from_slice(message.as_bytes()),
    )
}

/// A response with a status and no body (400 on overlap, 413, 500, 404).
pub(crate) fn empty_response(status: StatusCode) -> Response<Bytes> {
    response(status, &[], Bytes::new())
}

/// A long-polling payload.
pub(crate) fn payload_response(body: Bytes) -> Response<Bytes> {
    response(
        StatusCode::OK,
        &[
            (CONTENT_TYPE, "text/plain; charset=UTF-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

/// The answer to a polling POST.
pub(crate) fn post_ok_response() -> Response<Bytes> {
    response(
        StatusCode::OK,
        &[(CONTENT_TYPE, "text/html"), (CACHE_CONTROL, "no-store")],
        Bytes::from_static(b"ok"),
    )
}

/// Encodes `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `Set-Cookie` value of the polling handshake, as the `cookie` package writes it.
pub(crate) fn set_cookie(cookie: &super::config::CookieConfig, sid: &str) -> String {
    let mut out = format!("{}={sid}", cookie.name);
    if let Some(max_age) = cookie.max_age {
        out.push_str(&format!("; Max-Age={max_age}"));
    }
    if let Some(path) = &cookie.path {
        out.push_str(&format!("; Path={path}"));
    }
    if cookie.http_only {
        out.push_str("; HttpOnly");
    }
    if let Some(same_site) = &cookie.same_site {
        let mut chars = same_site.chars();
        let value: String = chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        out.push_str(&format!("; SameSite={value}"));
    }
    out
}

/// CORS headers for a request, as the `cors` package sets them; `preflight` for an `OPTIONS`.
pub(crate) fn cors_headers(
    cors: &super::config::CorsConfig,
    request: &HeaderMap,
    preflight: bool,
) -> HeaderMap {
    use super::config::CorsOrigin;
    let mut out = HeaderMap::new();
    let origin = request
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let mut put = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            out.append(name, value);
        }
    };
    match &cors.origin {
        CorsOrigin::Any => put("access-control-allow-origin", "*"),
        CorsOrigin::List(list) => {
            if let Some(origin) = origin.filter(|o| list.iter().any(|l| l == o)) {
                put("access-control-allow-origin", origin);
            }
            put("vary", "Origin");
        }
        CorsOrigin::Predicate(accepts) => {
            if let Some(origin) = origin.filter(|o| accepts(o)) {
                put("access-control-allow-origin", origin);
            }
            put("vary", "Origin");
        }
    }
    if cors.credentials {
        put("access-control-allow-credentials", "true");
    }
    if preflight {
        put("access-control-allow-methods", &cors.methods.join(","));
        match &cors.allowed_headers {
            Some(headers) => put("access-control-allow-headers", &headers.join(",")),
            None => {
                let requested = request
                    .get("access-control-request-headers")
                    .and_then(|v| v.to_str().ok());
                if let Some(requested) = requested {
                    put("access-control-allow-headers", requested);
                    put("vary", "Access-Control-Request-Headers");
                }
            }
        }
        if let Some(max_age) = cors.max_age {
            put("access-control-max-age", &max_age.to_string());
        }
    } else if !cors.exposed_headers.is_empty() {
        put(
            "access-control-expose-headers",
            &cors.exposed_headers.join(","),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_the_reference_json() {
        let res = error_response(ErrorCode::UnknownSid, None);
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(
            &res.body()[..],
            br#"{"code":1,"message":"Session ID unknown"}"#
        );
        let res = error_response(ErrorCode::Forbidden, Some("no \"way\""));
        assert_eq!(res.status(), 403);
        assert_eq!(&res.body()[..], br#"{"code":4,"message":"no \"way\""}"#);
    }

    #[test]
    fn query_later_duplicates_win_and_values_are_decoded() {
        let q = Query::parse(Some("EIO=3&EIO=4&transport=web%73ocket&sid=a%2Db"));
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("websocket"));
        assert_eq!(q.sid.as_deref(), Some("a-b"));
    }

    /// The shortcut for pairs without an escape reads what decoding every pair would.
    #[test]
    fn query_reads_as_the_whole_query_decoded() {
        let queries = [
            "",
            "&&",
            "EIO=4&transport=polling&t=PXy1a2b&sid=AAAAAAAAAAAAAAAAAAAA",
            "E%49O=4&transport=polling",
            "EIO&transport=&sid==x=",
            "sid=a+b&sid=c%20d&EIO=4%",
            "transport=websocket&transport=polling&=4&EIO=%FF",
            "eio=4&Transport=polling&SID=x",
        ];
        for query in queries {
            let mut want: [Option<String>; 3] = Default::default();
            for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                let i = match &*key {
                    "EIO" => 0,
                    "transport" => 1,
                    "sid" => 2,
                    _ => continue,
                };
                want[i] = Some(value.into_owned());
            }
            let q = Query::parse(Some(query));
            let got = [q.eio, q.transport, q.sid].map(|v| v.map(Cow::into_owned));
            assert_eq!(got, want, "{query}");
        }
        let q = Query::parse(Some("EIO=4&sid=abc"));
        assert!(matches!(q.sid, Some(Cow::Borrowed("abc"))));
    }

    #[test]
    fn websocket_key_shape() {
        assert!(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_websocket_key(""));
    }
}
