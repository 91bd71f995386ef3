//! The inspector's HTTP server: std's `TcpListener`, one thread per connection (at most
//! [`MAX_CONNECTIONS`] at once), requests parsed with `httparse`, one request per
//! connection (`Connection: close`) except the event stream, which stays open.
//!
//! Who may ask: on a loopback address, only requests whose `Host` is that address (or
//! `localhost`), so that a web page elsewhere cannot reach the inspector through DNS
//! rebinding; elsewhere (`--allow-remote`), only requests that present the token printed at
//! start (`?token=` or `Authorization: Bearer`). A send must be `application/json`, which a
//! cross-site form cannot post.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bus::SendRequest;
use super::model::Shared;

/// The most connections served at once (event streams included); more are refused with 503.
pub const MAX_CONNECTIONS: usize = 64;

/// The largest request head, and the largest body (a send's JSON).
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 256 * 1024;

/// What every connection thread shares.
pub struct Context {
    /// What the inspector knows.
    pub shared: Arc<Shared>,
    /// Sends for the bus thread (a `Sender` is not `Sync` on older toolchains: locked).
    pub requests: Mutex<Sender<SendRequest>>,
    /// The token remote clients must present, if the server listens beyond loopback.
    pub token: Option<String>,
    /// The address served (for the `Host` check).
    pub addr: SocketAddr,
    /// Set at SIGINT/SIGTERM: streams end.
    pub stop: Arc<AtomicBool>,
    live: AtomicUsize,
}

impl Context {
    /// A context for `addr`.
    pub fn new(
        shared: Arc<Shared>,
        requests: Sender<SendRequest>,
        token: Option<String>,
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Context {
            shared,
            requests: Mutex::new(requests),
            token,
            addr,
            stop,
            live: AtomicUsize::new(0),
        }
    }
}

/// A parsed request.
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's `key=value` pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response: a full one, or the event stream (written by `api::stream`).
pub enum Response {
    /// Status, content type, body.
    Full(u16, &'static str, Vec<u8>),
    /// `text/event-stream` until the client goes.
    Events,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Response::Full(status, "application/json", v.to_string().into_bytes())
    }

    /// A JSON error `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        Response::json(status, &serde_json::json!({ "error": message }))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a full response and closes.
pub fn write_full(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
}

/// `%XX` decoded (`+` as a space too in a query, not in a path).
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect();
    (percent_decode(path, false), query)
}

/// Reads one request; `Err` is the status and message to answer with (or none: the client
/// went away).
fn read_request(stream: &mut TcpStream) -> Result<Request, Option<(u16, String)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).map_err(|_| None)?;
        if n == 0 {
            return Err(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = req.method.unwrap_or("").to_string();
                let (path, query) = split_target(req.path.unwrap_or("/"));
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.trim().parse().unwrap_or(usize::MAX))
                    .unwrap_or(0);
                if length > MAX_BODY {
                    return Err(Some((413, format!("a body is {MAX_BODY} bytes at most"))));
                }
                let mut body = buf[head_len..].to_vec();
                while body.len() < length {
                    let n = stream.read(&mut chunk).map_err(|_| None)?;
                    if n == 0 {
                        return Err(None);
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(length);
                return Ok(Request {
                    method,
                    path,
                    query,
                    headers,
                    body,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(Some((413, "the request head is too large".into())))
            }
            Err(e) => return Err(Some((400, format!("a bad request: {e}")))),
        }
    }
}

/// Constant-time comparison (the token's length is not secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Whether `req` may be answered: the token when one is set, else a loopback `Host`.
fn allowed(ctx: &Context, req: &Request) -> Result<(), (u16, &'static str)> {
    if let Some(token) = &ctx.token {
        let given = req.param("token").or_else(|| {
            req.header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
        });
        return match given {
            Some(g) if same(g.trim(), token) => Ok(()),
            _ => Err((
                403,
                "this inspector needs the token it printed at start (?token=...)",
            )),
        };
    }
    let port = ctx.addr.port();
    let host = req.header("host").unwrap_or("");
    let ok = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        ctx.addr.to_string(),
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(host));
    if ok {
        Ok(())
    } else {
        Err((
            421,
            "the Host header does not name this inspector's address",
        ))
    }
}

fn handle(ctx: &Context, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let req = match read_request(&mut stream) {
        Ok(r) => r,
        Err(Some((status, message))) => {
            let body = serde_json::json!({ "error": message }).to_string();
            write_full(&mut stream, status, "application/json", body.as_bytes());
            return;
        }
        Err(None) => return,
    };
    if let Err((status, message)) = allowed(ctx, &req) {
        let body = serde_json::json!({ "error": message }).to_string();
        write_full(&mut stream, status, "application/json", body.as_bytes());
        return;
    }
    match super::api::route(ctx, &req) {
        Response::Full(status, content_type, body) => {
            write_full(&mut stream, status, content_type, &body)
        }
        Response::Events => super::api::stream(ctx, &req, stream),
    }
}

/// Serves `listener` until `ctx.stop`.
pub fn serve(listener: TcpListener, ctx: Arc<Context>) -> Result<(), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("the listening socket: {e}"))?;
    while !ctx.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if ctx.live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    ctx.live.fetch_sub(1, Ordering::SeqCst);
                    write_full(
                        &mut stream,
                        503,
                        "application/json",
                        br#"{"error":"too many connections to the inspector"}"#,
                    );
                    continue;
                }
                let mine = ctx.clone();
                let spawned = std::thread::Builder::new()
                    .name("inspect-http".into())
                    .spawn(move || {
                        handle(&mine, stream);
                        mine.live.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    // The stream went with the closure; only the count is left to undo.
                    ctx.live.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("accepting a connection: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_split_into_path_and_decoded_query() {
        let (path, q) = super::split_target("/api/machines/a%20b?token=x%2Fy&since=3");
        assert_eq!(path, "/api/machines/a b");
        assert_eq!(
            q,
            vec![
                ("token".to_string(), "x/y".to_string()),
                ("since".to_string(), "3".to_string())
            ]
        );
        assert_eq!(super::percent_decode("100%", true), "100%");
        assert_eq!(super::percent_decode("%zz+a", false), "%zz+a");
    }
}
