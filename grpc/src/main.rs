//! `interstate-grpc`: the gRPC gateway onto an interstate bus (see `docs/interop.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use interstate_platform::node::NodeConfig;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use interstate_grpc::bus::BusHandle;
use interstate_grpc::listen::{self, Admission};
use interstate_grpc::pb::bus_server::BusServer;
use interstate_grpc::service::BusService;

#[derive(Parser)]
#[command(
    name = "interstate-grpc",
    version,
    about = "A gRPC gateway onto an interstate bus"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the bus over gRPC (the default).
    Serve(ServeArgs),
    /// Measure a request's round trip through the gateway beside the native bus client's,
    /// on a private bus of its own.
    Bench {
        /// Round trips on each path.
        #[arg(long, default_value_t = 2000)]
        count: usize,
    },
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// The bus (else INTERSTATE_BUS, else `default`); its hub must be running.
    #[arg(long)]
    bus: Option<String>,
    /// The Unix socket to listen on (default: `<bus dir>/<bus>.grpc.sock`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Also listen on TCP at this address (e.g. 127.0.0.1:50051); needs --tls-cert and
    /// --tls-key: the gateway serves TCP only with TLS.
    #[arg(long)]
    tcp: Option<std::net::SocketAddr>,
    /// The server's certificate chain (PEM), for --tcp.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The server's private key (PEM), for --tcp.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Require TCP clients to present a certificate signed by this CA (PEM).
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// Another user allowed on the Unix socket (this process's user always is).
    #[arg(long = "allow-uid")]
    allow_uids: Vec<u32>,
    /// A group allowed on the Unix socket.
    #[arg(long = "allow-gid")]
    allow_gids: Vec<u32>,
}

fn node_config(bus: Option<&str>) -> Result<NodeConfig, String> {
    let mut config = NodeConfig::try_from_env().map_err(|e| e.to_string())?;
    if let Some(bus) = bus {
        interstate_platform::busdir::check_bus_name(bus)?;
        config.bus = bus.to_string();
    }
    Ok(config)
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading the {what} {}: {e}", path.display()))
}

fn tls(args: &ServeArgs) -> Result<Option<(std::net::SocketAddr, ServerTlsConfig)>, String> {
    let Some(addr) = args.tcp else {
        if args.tls_cert.is_some() || args.tls_key.is_some() || args.tls_client_ca.is_some() {
            return Err("--tls-cert, --tls-key and --tls-client-ca go with --tcp".into());
        }
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Err(format!(
            "--tcp {addr} needs --tls-cert and --tls-key: the gateway serves TCP only with TLS \
             (the Unix socket needs neither)"
        ));
    };
    let identity = Identity::from_pem(read(cert, "certificate")?, read(key, "key")?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &args.tls_client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(Some((addr, config)))
}

/// Resolves on SIGTERM or SIGINT, or when the bus thread has stopped: a gateway that cannot
/// reach the bus any more exits (with an error) rather than fail every call.
async fn shutdown_signal(bus: BusHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: serve until killed or the bus is gone.
        return bus.stopped().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = bus.stopped() => {}
    }
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    let config = node_config(args.bus.as_deref())?;
    let tcp = tls(args)?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| listen::socket_path(&config.dir, &config.bus));
    interstate_platform::busdir::ensure_dir(&config.dir).map_err(|e| e.to_string())?;
    let bus_name = config.bus.clone();
    let (bus, bus_thread) = interstate_grpc::bus::start(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    let admission = Admission {
        uids: args.allow_uids.clone(),
        gids: args.allow_gids.clone(),
    };
    let result = runtime.block_on(async {
        let service = BusService::new(bus.clone());
        let listener = listen::bind_unix(&socket)?;
        let incoming = listen::admitted(listener, admission);
        let unix = Server::builder()
            .add_service(BusServer::new(service.clone()))
            .serve_with_incoming_shutdown(incoming, shutdown_signal(bus.clone()));
        eprintln!(
            "interstate-grpc: serving bus '{bus_name}' at {}",
            socket.display()
        );
        let served = if let Some((addr, tls)) = tcp {
            let tcp = Server::builder()
                .tls_config(tls)
                .map_err(|e| format!("the TLS settings: {e}"))?
                .add_service(BusServer::new(service))
                .serve_with_shutdown(addr, shutdown_signal(bus.clone()));
            eprintln!("interstate-grpc: serving bus '{bus_name}' on TCP {addr} (TLS)");
            interstate_platform::notify::ready_with_status("serving gRPC").ok();
            let (a, b) = tokio::join!(unix, tcp);
            a.and(b)
        } else {
            interstate_platform::notify::ready_with_status("serving gRPC").ok();
            drop(service);
            unix.await
        };
        served.map_err(|e| format!("serving gRPC: {e}"))
    });
    let _ = std::fs::remove_file(&socket);
    // Stopped on its own (not by a signal): the link to the bus failed (it said why).
    let bus_failed = bus_thread.is_finished();
    // The handles (this one, and the runtime's tasks') keep the bus thread: dropping them
    // ends it.
    drop(bus);
    drop(runtime);
    let _ = bus_thread.join();
    result?;
    if bus_failed {
        return Err(format!("lost the bus '{bus_name}'; stopped serving"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Some(Command::Serve(args)) => serve(args),
        None => serve(&cli.serve),
        Some(Command::Bench { count }) => interstate_grpc::bench::run(*count).map(|report| {
            print!("{report}");
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interstate-grpc: {e}");
            ExitCode::from(2)
        }
    }
}
