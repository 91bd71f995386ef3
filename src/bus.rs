//! The bus from the facade: nodes hosting machines defined in JSON, with bound behaviors.
//!
//! ```no_run
//! use interstate::bus::{Node, NodeConfig, Role};
//! use interstate::Behaviors;
//!
//! let mut config = NodeConfig::new("myapp");
//! config.role = Role::Auto; // the first process serves the bus, the others join it
//! let mut node = Node::new(config)?;
//! let json = r#"{"id":"ui","initial":"idle","states":{"idle":{"on":{"GO":{"actions":"ask"}}}}}"#;
//! let behaviors = Behaviors::new().action("ask", |cx| {
//!     let _ = cx.send("worker-1", "DO_WORK", b"{\"task\":123}");
//! });
//! interstate::bus::add_json_machine(&mut node, "ui-main", json, behaviors)?;
//! loop {
//!     node.run_once(None)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// Diagnostics through the `log` facade, and the stderr logger the `interstate` command
/// installs ([`logging::install`]); see `docs/operations.md`.
pub use interstate_platform::logging;
/// Metrics reports and their OpenMetrics text ([`Node::metrics`]).
pub use interstate_platform::metrics;
pub use interstate_platform::node::{ProcessActor, StatsAnswer, Transport, USER_TOKEN_BASE};
pub use interstate_platform::transport::shm::WaitStrategy;
pub use interstate_platform::{
    busdir, MachineInfo, Node, NodeConfig, NodeStats, PlatformError, PortMessage, Registry, Role,
    DELIVERY_ERROR_EVENT, MACHINE_DOWN_EVENT, MACHINE_UP_EVENT, PORT_REQUESTS, REQUEST_ERROR_EVENT,
};

use crate::bind::{Behaviors, Directory};
use crate::compile::CompiledChart;
use crate::Error;
use interstate_core::{Chart, ProcessInfo};

impl Directory for Registry {
    fn process_info(&self, machine_id: &str) -> Option<ProcessInfo> {
        Registry::process_info(self, machine_id)
    }
}

/// Makes a compiled chart live for the rest of the process, as a node's machines do.
pub fn leak_chart(compiled: CompiledChart) -> Chart<'static> {
    let compiled: &'static CompiledChart = Box::leak(Box::new(compiled));
    compiled.chart()
}

/// Compiles `json`, binds `behaviors` (every name must be bound), and adds the machine to the
/// node as `id`. Its actions' `process_info` answers from the node's registry.
pub fn add_json_machine(
    node: &mut Node,
    id: &str,
    json: &str,
    behaviors: Behaviors,
) -> Result<(), Error> {
    let compiled = crate::compile::compile_str(json)?;
    let subscriptions = compiled.subscriptions().to_vec();
    let chart = leak_chart(compiled);
    let mut bound = behaviors.bind(&chart)?;
    bound.set_directory(Box::new(node.registry()));
    add_bound(node, id, chart, bound)?;
    subscribe_all(node, id, &subscriptions)
}

/// Adds the machine, with the actors bound for its `invoke`s if any.
fn add_bound(
    node: &mut Node,
    id: &str,
    chart: Chart<'static>,
    mut bound: crate::bind::Bound,
) -> Result<(), Error> {
    match bound.take_actors() {
        Some(actors) => node.add_machine_with_actors(id, chart, Box::new(bound), actors)?,
        None => node.add_machine(id, chart, Box::new(bound))?,
    }
    Ok(())
}

/// Like [`add_json_machine`] for an already compiled chart, binding leniently: unbound
/// actions do nothing (their names are returned), as `interstate run` wants.
pub fn add_chart_lenient(
    node: &mut Node,
    id: &str,
    compiled: CompiledChart,
    behaviors: Behaviors,
) -> Result<crate::bind::Unbound, Error> {
    let subscriptions = compiled.subscriptions().to_vec();
    let chart = leak_chart(compiled);
    let (mut bound, unbound) = behaviors.bind_lenient(&chart);
    if !unbound.actors.is_empty() {
        // A child that cannot start is never skipped: the chart does not run.
        return Err(crate::bind::Unbound {
            actors: unbound.actors,
            ..Default::default()
        }
        .into());
    }
    bound.set_directory(Box::new(node.registry()));
    add_bound(node, id, chart, bound)?;
    subscribe_all(node, id, &subscriptions)?;
    Ok(unbound)
}

/// Subscribes machine `id` to the chart's `"subscribe"` filters.
fn subscribe_all(node: &mut Node, id: &str, filters: &[String]) -> Result<(), Error> {
    for f in filters {
        node.subscribe(id, f)?;
    }
    Ok(())
}
