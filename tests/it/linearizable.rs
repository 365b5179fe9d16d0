//! A linearizability checker for read/write registers (Wing & Gong's search with Lowe's memoisation, as Knossos
//! and Porcupine do it), used over histories that concurrent clients record against a cluster. Each key is checked
//! on its own (linearizability composes per object).
//!
//! A history holds, per operation, when the client called it and when the answer came, and what it wrote or read.
//! A write without a definite answer (an error, a timeout) may have taken effect at any time after its call, or
//! never: it is open-ended and optional. Failed reads are left out (they observed nothing).

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    Write(String),
    Read(String),
}

#[derive(Debug, Clone)]
pub struct Op {
    /// When the client sent it (seconds since the history began).
    pub call: f64,
    /// When the answer came; `None`: no definite answer (a write that may or may not have happened).
    pub ret: Option<f64>,
    pub kind: Kind,
}

/// Whether `ops` on one register, starting at `initial`, has a linearization; on failure, the operations that
/// could not be placed (for the message).
pub fn check(initial: &str, ops: &[Op]) -> Result<(), String> {
    // An unanswered write whose value no read saw changes nothing observable whether it happened or not (values
    // are unique): leaving it out keeps the search small.
    let read: HashSet<&str> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            Kind::Read(v) => Some(v.as_str()),
            Kind::Write(_) => None,
        })
        .collect();
    let ops: Vec<Op> = ops
        .iter()
        .filter(|op| op.ret.is_some() || matches!(&op.kind, Kind::Write(v) if read.contains(v.as_str())))
        .cloned()
        .collect();
    let ops = &ops[..];
    assert!(ops.len() <= 128, "the checker takes at most 128 operations per key");
    let full: u128 = if ops.len() == 128 { u128::MAX } else { (1u128 << ops.len()) - 1 };
    let required: u128 = ops.iter().enumerate().filter(|(_, op)| op.ret.is_some()).fold(0, |m, (i, _)| m | (1 << i));
    let mut seen: HashSet<(u128, String)> = HashSet::new();
    let mut best = 0u32;
    // Depth-first over (linearized set, register value).
    let mut stack: Vec<(u128, String)> = vec![(0, initial.to_owned())];
    while let Some((done, value)) = stack.pop() {
        if done & required == required {
            return Ok(());
        }
        best = best.max(done.count_ones());
        if !seen.insert((done, value.clone())) {
            continue;
        }
        if seen.len() > 2_000_000 {
            return Err(format!(
                "the search gave up after {} states ({best} of {} operations ordered)",
                seen.len(),
                ops.len()
            ));
        }
        // An operation may go next if it was called before every pending completed operation returned.
        let horizon = ops
            .iter()
            .enumerate()
            .filter(|(i, op)| done & (1 << i) == 0 && op.ret.is_some())
            .map(|(_, op)| op.ret.unwrap())
            .fold(f64::INFINITY, f64::min);
        for (i, op) in ops.iter().enumerate() {
            if done & (1 << i) != 0 || op.call > horizon {
                continue;
            }
            let next = done | (1 << i);
            match &op.kind {
                Kind::Write(v) => stack.push((next & full, v.clone())),
                Kind::Read(v) if *v == value => stack.push((next & full, value.clone())),
                Kind::Read(_) => {}
            }
        }
    }
    Err(format!("no linearization: at most {best} of {} operations could be ordered", ops.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(call: f64, ret: Option<f64>, v: &str) -> Op {
        Op { call, ret, kind: Kind::Write(v.into()) }
    }
    fn r(call: f64, ret: f64, v: &str) -> Op {
        Op { call, ret: Some(ret), kind: Kind::Read(v.into()) }
    }

    #[test]
    fn accepts_histories_with_an_order_and_refuses_the_others() {
        // Sequential.
        assert!(check("0", &[w(0.0, Some(1.0), "a"), r(2.0, 3.0, "a")]).is_ok());
        // A stale read after a completed write is not linearizable.
        assert!(check("0", &[w(0.0, Some(1.0), "a"), r(2.0, 3.0, "0")]).is_err());
        // Concurrent with the write, either value may be read.
        assert!(check("0", &[w(0.0, Some(3.0), "a"), r(1.0, 2.0, "0")]).is_ok());
        assert!(check("0", &[w(0.0, Some(3.0), "a"), r(1.0, 2.0, "a")]).is_ok());
        // Once a read saw the new value, a later read may not see the old one.
        assert!(check("0", &[w(0.0, Some(10.0), "a"), r(1.0, 2.0, "a"), r(3.0, 4.0, "0")]).is_err());
        // An unanswered write may have happened (late) or not at all.
        assert!(check("0", &[w(0.0, None, "a"), r(5.0, 6.0, "0"), r(7.0, 8.0, "a")]).is_ok());
        assert!(check("0", &[w(0.0, None, "a"), r(5.0, 6.0, "0")]).is_ok());
        // ... but not before it was called.
        assert!(check("0", &[r(0.0, 1.0, "a"), w(2.0, None, "a")]).is_err());
        // A value nobody wrote.
        assert!(check("0", &[w(0.0, Some(1.0), "a"), r(2.0, 3.0, "b")]).is_err());
    }
}
