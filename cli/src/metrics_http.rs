//! `--metrics ADDR`: the OpenMetrics text of the process's metrics over HTTP
//! (`GET /metrics`), written by hand (a few lines of text: `interstate_platform::metrics`)
//! rather than with `prometheus-client`, whose registry would copy every counter into its
//! own atomics on the hot path, or on every scrape through custom collectors, for no gain.
//!
//! The server is one thread that serves one connection at a time (a scraper asks every few
//! seconds). It cannot read the node, which lives on the loop's thread: it raises a flag and
//! waits (at most 2 s) for the loop to render the text ([`MetricsServer::serve_pending`],
//! called every loop turn, which does nothing unless a scrape waits). So nothing is built
//! unless someone scrapes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use interstate_platform::metrics::OPENMETRICS_CONTENT_TYPE;

/// How long a scrape waits for the loop's text.
const RENDER_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Shared {
    wanted: AtomicBool,
    text: Mutex<Option<String>>,
    ready: Condvar,
}

/// The metrics endpoint of a long-running verb.
pub struct MetricsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr` (e.g. `127.0.0.1:9464`; port 0 picks a free one) and serves.
    pub fn start(addr: &str) -> Result<MetricsServer, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: cannot listen: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("--metrics {addr}: {e}"))?;
        let shared = Arc::new(Shared::default());
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    serve(&for_thread, stream);
                }
            })
            .map_err(|e| format!("--metrics: cannot start its thread: {e}"))?;
        Ok(MetricsServer { shared, addr })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Renders the text with `render` if a scrape waits for it (call every loop turn).
    pub fn serve_pending(&self, render: impl FnOnce() -> String) {
        if !self.shared.wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        let text = render();
        if let Ok(mut slot) = self.shared.text.lock() {
            *slot = Some(text);
        }
        self.shared.ready.notify_all();
    }
}

/// Answers one connection.
fn serve(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8192];
    let mut len = 0;
    let path = loop {
        let Ok(n) = stream.read(&mut buf[len..]) else {
            return;
        };
        if n == 0 {
            return;
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                if req.method != Some("GET") {
                    return respond(
                        &mut stream,
                        "405 Method Not Allowed",
                        "text/plain",
                        "GET only\n",
                    );
                }
                break req.path.unwrap_or("").to_string();
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    "bad request\n",
                )
            }
        }
    };
    if path.split('?').next() != Some("/metrics") {
        return respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n");
    }
    let Ok(mut slot) = shared.text.lock() else {
        return;
    };
    *slot = None;
    shared.wanted.store(true, Ordering::Release);
    let (mut slot, _) = match shared
        .ready
        .wait_timeout_while(slot, RENDER_WAIT, |t| t.is_none())
    {
        Ok(r) => r,
        Err(_) => return,
    };
    match slot.take() {
        Some(text) => respond(&mut stream, "200 OK", OPENMETRICS_CONTENT_TYPE, &text),
        None => respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            "the process's loop did not answer in time\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}
