//! Chart pictures and summaries.

use interstate_core::Chart;

/// A picture format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Mermaid `stateDiagram-v2`.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// One line: states, transitions, events, actions.
pub fn summary(chart: &Chart<'_>) -> String {
    format!(
        "{} states, {} transitions, {} events, {} actions, {} guards",
        chart.state_count(),
        chart.transition_count(),
        chart.event_count(),
        chart.action_count(),
        chart.guard_count()
    )
}

/// Renders a chart (placeholder until the diagram module lands).
pub fn render(chart: &Chart<'_>, _format: Format) -> String {
    summary(chart)
}
