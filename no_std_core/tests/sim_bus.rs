mod sim;
use interstate_core::Duration;
use sim::*;

#[test]
fn smoke() {
    let mut s = Sim::new(SimConfig::default());
    let a = s.add_process(&["a"], &[]);
    let _b = s.add_process(&["b"], &[]);
    assert!(s.settle(Duration::from_millis(10_000)));
    for _ in 0..10 {
        s.send(a, "a", "b");
    }
    assert!(s.settle(Duration::from_millis(10_000)));
    assert_eq!(s.rec.delivered.len(), 10);
}
