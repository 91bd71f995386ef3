//! InterNode: buses on several hosts joined through an MQTT broker.
//!
//! [`session`] is a sans-IO MQTT 3.1.1 client session over the `mqttrs` codec (CONNECT
//! with a persistent session and a last will, keepalive, SUBSCRIBE, QoS 1 publishing with
//! retransmission after a reconnect); [`bridge`] holds the bridge's rules: the topic layout,
//! the payloads of registry records and forwarded messages, and which node keeps a machine
//! id two nodes claim; [`delivery`] the end-to-end acknowledgement (what a node's inbox
//! carries, and the tables of messages awaiting an answer); [`inbox`] how one publish on a
//! node's inbox carries several records (acknowledgements riding on messages) and when it
//! leaves; [`presence`] which nodes are there (a node's run and connection, and the grace
//! that keeps a broker restart from being taken for the node leaving). The I/O lives in the
//! platform (`interstate_platform::mqtt`); the layout and guarantees are in
//! `docs/internode.md`.

pub mod bridge;
pub mod delivery;
pub mod inbox;
pub mod presence;
pub mod session;

pub use session::{
    packet_len, ConnectOptions, ConnectRefusal, MqttError, Output, Received, Session, SessionStats,
    State, Will,
};
