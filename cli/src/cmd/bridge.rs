//! `interstate bridge --mqtt URL`: this bus joined to other hosts' buses through an MQTT
//! broker (see `interstate_platform::mqtt` and docs/internode.md).

use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use std::path::PathBuf;

use interstate_platform::mqtt::{
    host_name, parse_broker_url, BridgeError, MqttBridge, MqttBridgeConfig, TlsConfig, TlsFiles,
};

use crate::cmd::bus::{stop_flag, BusArgs};
use crate::outln;
use interstate::bus::{Node, Role};

/// The bridge's settings from the command line.
#[derive(Clone, Debug)]
pub struct BridgeArgs {
    /// `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`.
    pub mqtt: String,
    /// This node's name (default: the host name).
    pub node: Option<String>,
    /// The topic prefix (default: `interstate`).
    pub prefix: Option<String>,
    /// `USER:PASSWORD` for the broker.
    pub credentials: Option<String>,
    /// How long a message to another node waits for its answer (milliseconds).
    pub ack_timeout_ms: Option<u64>,
    /// How long a node whose connection ended is waited for (milliseconds).
    pub node_grace_ms: Option<u64>,
    /// TLS and the other ways to give a password.
    pub security: SecurityArgs,
    /// Machines hosted in the bridge's own node: (id, chart file).
    pub machines: Vec<(String, PathBuf)>,
    /// Guard and named-delay values for their charts.
    pub values: super::Values,
}

/// Parses `--machine ID=CHART.json` values.
pub fn parse_machines(values: &[String]) -> Result<Vec<(String, PathBuf)>, String> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((id, file)) if !id.is_empty() && !file.is_empty() => {
                Ok((id.to_string(), PathBuf::from(file)))
            }
            _ => Err(format!(
                "--machine '{v}': give the machine's id and its chart as ID=CHART.json"
            )),
        })
        .collect()
}

/// Hosts the `--machine` charts in the bridge's node, with the built-in actions of `run`.
fn host_machines(node: &mut Node, args: &BridgeArgs) -> Result<(), String> {
    for (id, file) in &args.machines {
        let compiled = super::load_chart(file)?;
        args.values
            .check_complete(&compiled.chart())
            .map_err(|e| format!("{}: {e}", super::display_name(file)))?;
        let behaviors = args
            .values
            .bind(interstate::Behaviors::new().on_log(|who, msg| {
                let _ = outln!("[{who}] {msg}");
            }));
        let unbound = interstate::bus::add_chart_lenient(node, id, compiled, behaviors)
            .map_err(|e| format!("--machine {id}: {e}"))?;
        if !unbound.actions.is_empty() {
            log::info!(
                target: interstate_platform::logging::CLI,
                "note: actions {} of machine '{id}' have no code in `interstate bridge` and do nothing",
                unbound.actions.join(", ")
            );
        }
    }
    Ok(())
}

/// The bridge's TLS files, and a user name whose password is not on the command line
/// (where every user of the host can read it in `ps`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SecurityArgs {
    /// PEM file of the CA(s) that signed the broker's certificate (mqtts://; default: the
    /// system bundle /etc/ssl/certs/ca-certificates.crt).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of this node's client certificate, for brokers that require one (mqtts://).
    #[arg(long, value_name = "PEM", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (mqtts://).
    #[arg(long, value_name = "PEM", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// The name the broker's certificate must hold (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// User name for the broker; the password comes from --password-file or the environment
    /// variable INTERSTATE_MQTT_PASSWORD.
    #[arg(long, value_name = "USER", conflicts_with = "credentials")]
    pub username: Option<String>,
    /// File whose first line is the password of --username.
    #[arg(long, value_name = "FILE", requires = "username")]
    pub password_file: Option<PathBuf>,
}

/// The environment variable that holds the password of `--username` when no
/// `--password-file` is given.
pub const PASSWORD_ENV: &str = "INTERSTATE_MQTT_PASSWORD";

/// The bridge settings the command line describes: the broker URL, the node name and prefix,
/// the credentials and, for `mqtts://`, TLS (every file read and checked now, so that a
/// wrong path fails before the bridge starts).
pub fn bridge_config(args: &BridgeArgs) -> Result<MqttBridgeConfig, String> {
    let url = parse_broker_url(&args.mqtt).map_err(|e| e.to_string())?;
    let node_name = args.node.clone().unwrap_or_else(host_name);
    let mut config = MqttBridgeConfig::new(url.addrs.clone(), &node_name);
    if let Some(p) = &args.prefix {
        config.prefix = p.clone();
    }
    if let Some(c) = &args.credentials {
        let (user, pass) = c
            .split_once(':')
            .ok_or("--credentials takes USER:PASSWORD")?;
        config.credentials = Some((user.into(), pass.into()));
    }
    if let Some(ms) = args.ack_timeout_ms {
        config.ack_timeout = StdDuration::from_millis(ms.max(1));
    }
    if let Some(ms) = args.node_grace_ms {
        config.node_grace = StdDuration::from_millis(ms);
    }
    let sec = &args.security;
    if let Some(user) = &sec.username {
        let password = match &sec.password_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read the password file {}: {e}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            None => std::env::var(PASSWORD_ENV).map_err(|_| {
                format!(
                    "--username {user} needs a password: --password-file FILE or ${PASSWORD_ENV}"
                )
            })?,
        };
        config.credentials = Some((user.clone(), password));
    }
    let files = TlsFiles {
        ca_file: sec.ca_file.clone(),
        cert_file: sec.cert_file.clone(),
        key_file: sec.key_file.clone(),
        server_name: sec.tls_server_name.clone(),
    };
    if url.tls {
        config.tls = Some(TlsConfig::load(&files, &url.host).map_err(|e| e.to_string())?);
    } else if files.any() {
        return Err(format!(
            "--ca-file, --cert-file, --key-file and --tls-server-name are for TLS: use mqtts:// instead of {}",
            args.mqtt
        ));
    }
    Ok(config)
}

/// Runs the bridge until SIGINT or SIGTERM, then prints its counters.
pub fn bridge(bus: &BusArgs, args: &BridgeArgs) -> Result<(), String> {
    let stop = stop_flag()?;
    let config = bridge_config(args)?;
    let node_name = config.node_name.clone();
    let prefix = config.prefix.clone();
    let node = Node::new(bus.config(Role::Client)?).map_err(|e| super::buses::no_hub_hint(&e))?;
    if !node.is_connected() {
        return Err(format!(
            "could not reach the hub of bus '{}'",
            node.config().bus
        ));
    }
    let mut node = node;
    host_machines(&mut node, args)?;
    let bus_name = node.config().bus.clone();
    let user = config.credentials.as_ref().map(|(u, _)| u.clone());
    let mut bridge = MqttBridge::new(node, config).map_err(|e| e.to_string())?;
    eprintln!(
        "interstate: bridge of bus '{bus_name}' as node '{node_name}' to {} (topics under '{prefix}/')",
        args.mqtt
    );
    while !stop.load(Ordering::Relaxed) {
        bridge
            .run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| explain(&e, user.as_deref()))?;
    }
    let s = bridge.stats();
    eprintln!(
        "interstate: bridge stopped: {} messages forwarded to other nodes, {} delivered from them \
         ({} duplicates dropped, {} not deliverable), {} failed back; {} connections, {} registry records published",
        s.forwarded, s.delivered, s.duplicates, s.dropped_in, s.failed_back, s.connects, s.records_published
    );
    bridge.shutdown();
    Ok(())
}

/// A bridge error with what the command line adds to it: for a refused connection, which
/// user name was tried (or that none was).
fn explain(e: &BridgeError, user: Option<&str>) -> String {
    match e {
        BridgeError::Refused(_) => match user {
            Some(u) => format!("{e} (user '{u}': check the user name and password)"),
            None => format!(
                "{e} (no user name was given: pass --username with --password-file, or --credentials)"
            ),
        },
        _ => e.to_string(),
    }
}
