//! The OS edge of interstate. Filled by the bus issues.
