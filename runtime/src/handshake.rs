//! The handshake object of a socket, as the reference builds it at namespace connection.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::Value;
use sio_core::engine::Handshake as EngineHandshake;

/// What the server knows about a socket's connection (`socket.handshake` in the reference).
#[derive(Clone, Debug)]
pub struct Handshake {
    /// Headers of the first HTTP request of the connection.
    pub headers: HeaderMap,
    /// Connection time as JavaScript's `Date.prototype.toString` writes it, in UTC.
    pub time: String,
    /// The peer's IP address.
    pub address: String,
    /// Whether the request carried an `Origin` header.
    pub xdomain: bool,
    /// Whether the connection is encrypted (TLS is terminated before sio, so this is false).
    pub secure: bool,
    /// Connection time in milliseconds since the Unix epoch.
    pub issued: u64,
    /// Path and query of the first request.
    pub url: String,
    /// The query parameters of the first request (later duplicates win).
    pub query: BTreeMap<String, String>,
    /// The CONNECT payload (`{}` when absent).
    pub auth: Value,
}

impl Handshake {
    pub(crate) fn new(engine: &EngineHandshake, auth: Value, at: SystemTime) -> Handshake {
        let issued = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let query = form_query(engine.uri.query());
        Handshake {
            headers: engine.headers.clone(),
            time: js_date_string(issued),
            address: engine
                .remote_addr
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
            xdomain: engine.headers.contains_key(http::header::ORIGIN),
            secure: false,
            issued,
            url: engine.uri.to_string(),
            query,
            auth,
        }
    }
}

/// A socket's handshake, built on first use: most sockets never read it, and the built object
/// (headers, query map, strings) would be a large share of an idle connection's memory. Until
/// then it holds the core's shared handshake of the session, the auth payload and the time.
pub(crate) struct LazyHandshake {
    engine: Arc<EngineHandshake>,
    auth: Value,
    at: SystemTime,
    built: OnceCell<Arc<Handshake>>,
}

impl LazyHandshake {
    pub(crate) fn new(engine: Arc<EngineHandshake>, auth: Value, at: SystemTime) -> LazyHandshake {
        LazyHandshake {
            engine,
            auth,
            at,
            built: OnceCell::new(),
        }
    }

    /// The handshake, built the first time.
    pub(crate) fn get(&self) -> Arc<Handshake> {
        self.built
            .get_or_init(|| Arc::new(Handshake::new(&self.engine, self.auth.clone(), self.at)))
            .clone()
    }
}

fn form_query(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `new Date(ms) + ""` in the UTC time zone: `Wed Jan 01 2025 10:00:00 GMT+0000 (Coordinated
/// Universal Time)`.
fn js_date_string(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:02} {} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_like_javascript() {
        assert_eq!(
            js_date_string(1_735_725_600_000),
            "Wed Jan 01 2025 10:00:00 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(
            js_date_string(951_782_400_000),
            "Tue Feb 29 2000 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
    }

    #[test]
    fn query_is_decoded() {
        let q = form_query(Some("EIO=4&name=a+b%21&x"));
        assert_eq!(q["EIO"], "4");
        assert_eq!(q["name"], "a b!");
        assert_eq!(q["x"], "");
    }
}
