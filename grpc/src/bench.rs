//! `interstate-grpc bench`: a request's round trip to an echo machine through the gateway
//! (gRPC over its Unix socket), beside the same round trip from a native bus client, in the
//! same run on the same private bus: hub, echo machine and gateway all in this process, each
//! on its own thread, talking over the bus's Unix sockets as separate processes would.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use interstate_core::{Correlation, Duration};
use interstate_platform::node::{Node, NodeConfig, Role, Transport};

use crate::pb;

const ECHO: &str = "bench-echo";

/// The round trips measured on one path, in microseconds, sorted.
pub struct Figures {
    /// Each round trip.
    pub micros: Vec<f64>,
}

impl Figures {
    fn quantile(&self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        let i = ((self.micros.len() - 1) as f64 * q).round() as usize;
        self.micros[i]
    }
    fn mean(&self) -> f64 {
        self.micros.iter().sum::<f64>() / self.micros.len().max(1) as f64
    }
    /// One line: p50, p99, mean, and requests per second one after another.
    pub fn line(&self, name: &str) -> String {
        format!(
            "{name:<34} p50 {:>8.1} µs   p99 {:>8.1} µs   mean {:>8.1} µs   {:>8.0} req/s",
            self.quantile(0.5),
            self.quantile(0.99),
            self.mean(),
            1e6 / self.mean().max(f64::MIN_POSITIVE)
        )
    }
}

fn config(dir: &Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("bench");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = Transport::UnixSocket;
    c
}

/// Runs a thread hosting `make`'s node until `stop`; returns once the node is up.
fn spawn_node(
    name: &str,
    stop: Arc<AtomicBool>,
    make: impl FnOnce() -> Result<Node, String> + Send + 'static,
    mut turn: impl FnMut(&mut Node) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut node = match make() {
                Ok(n) => n,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            node.set_logger(|_| {});
            let _ = ready_tx.send(Ok(()));
            while !stop.load(Ordering::Relaxed) {
                if node.run_once(Some(StdDuration::from_millis(50))).is_err() {
                    return;
                }
                turn(&mut node);
            }
        })
        .map_err(|e| format!("starting the {name} thread: {e}"))?;
    ready_rx
        .recv()
        .map_err(|_| format!("the {name} thread stopped"))??;
    Ok(thread)
}

/// The native path: a bus client's port requests, one after another.
fn native(dir: &Path, count: usize, payload: &[u8]) -> Result<Figures, String> {
    let mut node = Node::new(config(dir, Role::Client)).map_err(|e| e.to_string())?;
    let port = "bench-native";
    node.open_port(port).map_err(|e| e.to_string())?;
    node.run_until(StdDuration::from_secs(5), |n| n.registry().contains(ECHO))
        .map_err(|e| e.to_string())?;
    let mut micros = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let id = node
            .request_from_port(port, ECHO, "ping", payload, Duration::from_millis(5_000))
            .map_err(|e| e.to_string())?;
        node.flush();
        let mut answered = false;
        while !answered {
            node.run_once(Some(StdDuration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            while let Some(m) = node.recv_port() {
                if m.correlation == Correlation::Reply(id.0) {
                    if m.event != "pong" {
                        return Err(format!("the native request failed: {}", m.event));
                    }
                    answered = true;
                }
            }
        }
        micros.push(start.elapsed().as_secs_f64() * 1e6);
    }
    micros.sort_by(f64::total_cmp);
    Ok(Figures { micros })
}

/// The gRPC path: the gateway's Request over its Unix socket, one after another.
async fn grpc(socket: PathBuf, count: usize, payload: &[u8]) -> Result<Figures, String> {
    let mut client = crate::client::connect_unix(socket)
        .await
        .map_err(|e| format!("connecting to the gateway: {e}"))?;
    let mut micros = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        client
            .request(pb::RequestRequest {
                to: ECHO.into(),
                event: "ping".into(),
                data: payload.to_vec(),
                timeout_ms: 5_000,
            })
            .await
            .map_err(|e| format!("the gRPC request failed: {e}"))?;
        micros.push(start.elapsed().as_secs_f64() * 1e6);
    }
    micros.sort_by(f64::total_cmp);
    Ok(Figures { micros })
}

/// Runs the bench: `count` round trips on each path (after `count / 10` to warm up).
pub fn run(count: usize) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("interstate-grpc-bench.{}", std::process::id()));
    let result = run_in(&dir, count);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, count: usize) -> Result<String, String> {
    interstate_platform::busdir::ensure_dir(dir).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let hub_dir = dir.to_path_buf();
    let hub = spawn_node(
        "bench-hub",
        stop.clone(),
        move || Node::new(config(&hub_dir, Role::Hub)).map_err(|e| e.to_string()),
        |_| {},
    )?;
    let echo_dir = dir.to_path_buf();
    let echo = spawn_node(
        "bench-echo",
        stop.clone(),
        move || {
            let mut n = Node::new(config(&echo_dir, Role::Client)).map_err(|e| e.to_string())?;
            n.open_port(ECHO).map_err(|e| e.to_string())?;
            Ok(n)
        },
        |node| {
            while let Some(m) = node.recv_port() {
                let _ = node.reply_from_port(ECHO, &m, "pong", &m.payload);
            }
            node.flush();
        },
    )?;
    let payload = br#"{"n":12345}"#;
    let warm = (count / 10).max(1);
    let outcome = (|| {
        native(dir, warm, payload)?;
        let native = native(dir, count, payload)?;
        let (bus, bus_thread) = crate::bus::start(config(dir, Role::Client))?;
        let socket = crate::listen::socket_path(dir, "bench");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        let grpc = runtime.block_on(async {
            let listener = crate::listen::bind_unix(&socket)?;
            let incoming = crate::listen::admitted(listener, Default::default());
            let server = tonic::transport::Server::builder()
                .add_service(pb::bus_server::BusServer::new(
                    crate::service::BusService::new(bus),
                ))
                .serve_with_incoming(incoming);
            let server = tokio::spawn(server);
            grpc(socket.clone(), warm, payload).await?;
            let figures = grpc(socket.clone(), count, payload).await;
            server.abort();
            figures
        })?;
        drop(runtime);
        let _ = bus_thread.join();
        Ok::<_, String>((native, grpc))
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    let _ = hub.join();
    let (native, grpc) = outcome?;
    Ok(format!(
        "request round trip to an echo machine, {count} one after another on each path \
         ({} bytes of payload; hub, echo, gateway and clients in this process, on their own \
         threads, over Unix sockets):\n{}\n{}\n",
        payload.len(),
        native.line("native bus client (unix socket)"),
        grpc.line("gRPC via interstate-grpc (unix)"),
    ))
}
