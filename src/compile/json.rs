//! Reading XState's JSON: the keys a state or a transition config may have, JavaScript's
//! key order (the order XState sees keys in), lists that may be one value, and the JSON paths
//! errors name.

use serde_json::{Map, Value};

/// Keys of a state config this compiler reads.
pub(super) const STATE_KEYS: &[&str] = &[
    "id", "key", "type", "initial", "states", "on", "always", "after", "entry", "exit", "onDone",
    "history", "target", "invoke",
];
/// Keys XState accepts that have no effect on stepping here (documentation, typing, data).
pub(super) const IGNORED_KEYS: &[&str] = &[
    "context",
    "description",
    "input",
    "meta",
    "tags",
    "output",
    "version",
    "predictableActionArguments",
    "preserveActionOrder",
    "schema",
    "tsTypes",
    "types",
    "data",
    "strict",
    "$schema",
];
pub(super) const TRANSITION_KEYS: &[&str] = &[
    "target",
    "guard",
    "cond",
    "actions",
    "reenter",
    "internal",
    "in",
    "description",
    "meta",
];

/// JavaScript's own-property order: array-index keys ascending, then the rest as inserted.
pub(super) fn js_key_order(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let is_index = |k: &str| {
        !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_digit())
            && (k == "0" || !k.starts_with('0'))
            && k.parse::<u64>().is_ok_and(|n| n < u32::MAX as u64)
    };
    let mut idx: Vec<_> = map.iter().filter(|(k, _)| is_index(k)).collect();
    idx.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0));
    idx.extend(map.iter().filter(|(k, _)| !is_index(k)));
    idx
}

pub(super) fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        v => vec![v],
    }
}

pub(super) fn index_path(path: &str, i: usize, is_array: bool) -> String {
    if is_array {
        format!("{path}[{i}]")
    } else {
        path.to_string()
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
