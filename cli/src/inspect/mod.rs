//! `interstate inspect`: a live web page of the bus. Every machine with its process, its
//! chart drawn as nested boxes with its active states lit as they change, the event log
//! across the bus, and a form to send an event. See docs/inspector.md.
//!
//! Three parts: the bus thread ([`bus`]) watches every machine's state reports and the
//! monitor stream and writes them into the shared [`model`]; the HTTP server ([`server`],
//! a thread per connection) answers the page and the JSON endpoints ([`api`]) from it. The
//! page's assets are embedded in the binary (`assets/`): nothing is fetched at run time.

pub mod api;
pub mod bus;
pub mod model;
pub mod server;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use interstate::bus::Role;

use crate::cmd::bus::{stop_flag, BusArgs};
use crate::outln;

/// The address served when `--listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7170";

/// `interstate inspect` options.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// `--listen ADDR` (an `IP:PORT`; port 0: any free one).
    pub listen: String,
    /// `--allow-remote`: listen on an address other than loopback (a token is then needed).
    pub allow_remote: bool,
    /// `--open`: open the page in the desktop's browser.
    pub open: bool,
}

/// 128 random bits as hex, from the kernel.
fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom for the access token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `interstate inspect [--bus NAME] [--listen ADDR] [--allow-remote] [--open]`: serves the
/// page until SIGINT/SIGTERM. Prints the page's address (with the token when there is one)
/// on stdout as its first line.
pub fn inspect(args: &BusArgs, opts: &InspectOptions) -> Result<(), String> {
    let addr: SocketAddr = opts.listen.parse().map_err(|_| {
        format!(
            "--listen {}: expected IP:PORT, e.g. {DEFAULT_LISTEN}",
            opts.listen
        )
    })?;
    let loopback = addr.ip().is_loopback();
    if !loopback && !opts.allow_remote {
        return Err(format!(
            "--listen {addr} is not a loopback address: anyone who reaches it could read the \
             bus and send events. Pass --allow-remote too (the page then needs the token \
             printed at start), or listen on 127.0.0.1"
        ));
    }
    let token = if loopback { None } else { Some(new_token()?) };
    let stop = stop_flag()?;
    let config = args.config(Role::Client)?;
    let shared = Arc::new(model::Shared::default());
    let (requests, incoming) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    let bus_thread = {
        let shared = shared.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("inspect-bus".into())
            .spawn(move || bus::run(config, shared, incoming, stop, ready_tx))
            .map_err(|e| format!("starting the bus thread: {e}"))?
    };
    match ready.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("the bus thread ended before it connected".into()),
    }
    let listener = TcpListener::bind(addr).map_err(|e| {
        format!("--listen {addr}: {e} (choose another port with --listen 127.0.0.1:PORT)")
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("the listening socket: {e}"))?;
    let url = match &token {
        Some(t) => format!("http://{bound}/?token={t}"),
        None => format!("http://{bound}/"),
    };
    let bus_name = shared.lock().bus.clone();
    outln!("{url}")?;
    eprintln!("interstate: inspecting bus '{bus_name}' at {url} (Ctrl-C stops)");
    if opts.open {
        if let Err(e) = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            eprintln!("interstate: could not open a browser (xdg-open: {e}); open {url}");
        }
    }
    let ctx = Arc::new(server::Context::new(
        shared.clone(),
        requests,
        token,
        bound,
        stop.clone(),
    ));
    let served = server::serve(listener, ctx);
    stop.store(true, Ordering::Relaxed);
    shared.notify();
    let _ = bus_thread.join();
    served
}
