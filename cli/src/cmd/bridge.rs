//! `interstate bridge --mqtt URL`: this bus joined to other hosts' buses through an MQTT
//! broker (see `interstate_platform::mqtt` and docs/internode.md).

use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use interstate_platform::mqtt::{host_name, parse_mqtt_url, MqttBridge, MqttBridgeConfig};

use crate::cmd::bus::{stop_flag, BusArgs};
use interstate::bus::{Node, Role};

/// The bridge's settings from the command line.
#[derive(Clone, Debug)]
pub struct BridgeArgs {
    /// `mqtt://HOST[:PORT]`.
    pub mqtt: String,
    /// This node's name (default: the host name).
    pub node: Option<String>,
    /// The topic prefix (default: `interstate`).
    pub prefix: Option<String>,
    /// `USER:PASSWORD` for the broker.
    pub credentials: Option<String>,
    /// How long a message to another node waits for its answer (milliseconds).
    pub ack_timeout_ms: Option<u64>,
}

/// Runs the bridge until SIGINT or SIGTERM, then prints its counters.
pub fn bridge(bus: &BusArgs, args: &BridgeArgs) -> Result<(), String> {
    let stop = stop_flag()?;
    let broker = parse_mqtt_url(&args.mqtt).map_err(|e| e.to_string())?;
    let node_name = args.node.clone().unwrap_or_else(host_name);
    let mut config = MqttBridgeConfig::new(broker, &node_name);
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
    let prefix = config.prefix.clone();
    let node = Node::new(bus.config(Role::Client)?).map_err(|e| super::buses::no_hub_hint(&e))?;
    if !node.is_connected() {
        return Err(format!(
            "could not reach the hub of bus '{}'",
            node.config().bus
        ));
    }
    let bus_name = node.config().bus.clone();
    let mut bridge = MqttBridge::new(node, config).map_err(|e| e.to_string())?;
    eprintln!(
        "interstate: bridge of bus '{bus_name}' as node '{node_name}' to {} (topics under '{prefix}/')",
        args.mqtt
    );
    while !stop.load(Ordering::Relaxed) {
        bridge
            .run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
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
