//! Compiles `charts/traffic.json` to native Rust in `$OUT_DIR/traffic_native.rs` (Cargo runs
//! this again when the chart changes). A chart using a feature the generator does not compile
//! fails the build with a message naming the feature and the state.

fn main() {
    if let Err(e) = interstate::native::build("charts/traffic.json") {
        panic!("{e}");
    }
}
