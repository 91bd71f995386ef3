//! The charts of the step benchmark, shared by `benches/step.rs` (criterion) and
//! `examples/step_events.rs` (instruction counts), so that both measure the same charts.

/// Two states toggling on `T`, one entry action each.
pub const FLAT: &str = r#"{"id":"flat","initial":"a","states":{
  "a":{"entry":"enA","on":{"T":"b"}},
  "b":{"entry":"enB","on":{"T":"a"}}}}"#;

/// Two 5-deep branches under the root; `T` moves between their leaves (10 entry and exit
/// actions per event).
pub fn deep_chart() -> String {
    // a1 > a2 > ... > a5 and b1 > ... > b5 under the root; T moves a5 <-> b5.
    fn branch(p: &str, level: usize, other: &str) -> String {
        let name = format!("{p}{level}");
        let inner = if level == 5 {
            format!(r#""on":{{"T":"{other}"}}"#)
        } else {
            format!(
                r#""initial":"{p}{}","states":{{"{p}{}":{}}}"#,
                level + 1,
                level + 1,
                branch(p, level + 1, other)
            )
        };
        format!(r#"{{"entry":"en_{name}","exit":"ex_{name}",{inner}}}"#)
    }
    let a = branch("a", 1, "#deep.b1.b2.b3.b4.b5");
    let b = branch("b", 1, "#deep.a1.a2.a3.a4.a5");
    format!(r#"{{"id":"deep","initial":"a1","states":{{"a1":{a},"b1":{b}}}}}"#)
}

/// Four parallel regions, each toggling on `T` (4 entry actions per event).
pub fn parallel_chart() -> String {
    let regions: Vec<String> = (1..=4)
        .map(|r| {
            format!(
                r#""r{r}":{{"initial":"x","states":{{"x":{{"entry":"en_r{r}x","on":{{"T":"y"}}}},"y":{{"entry":"en_r{r}y","on":{{"T":"x"}}}}}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"id":"par","type":"parallel","states":{{{}}}}}"#,
        regions.join(",")
    )
}
