//! Session data: reads deserialize one key, writes patch the arrived bytes; whatever the
//! sequence of operations, the result equals the same operations on a plain JSON map.

mod common {
    pub mod fixtures;
}

use common::fixtures::{T0, keys};
use proptest::prelude::*;
use sealed_session::{Codec, SealedCodec, SessionId, SessionState};
use serde_json::{Map, Value, json};

fn codec() -> SealedCodec {
    SealedCodec::new(keys())
}

/// A state whose data arrived as bytes (opened from a token), as in a real request.
fn arrived(map: &Map<String, Value>) -> SessionState {
    let c = codec();
    let mut s = SessionState::new(SessionId::generate().unwrap(), T0, T0);
    for (k, v) in map {
        s.insert(k, v).unwrap();
    }
    let token = c.seal(&s, b"p").unwrap();
    c.open(&token, b"p").unwrap().into_state()
}

fn reopened(s: &SessionState) -> SessionState {
    let c = codec();
    c.open(&c.seal(s, b"p").unwrap(), b"p")
        .unwrap()
        .into_state()
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Value),
    Remove(String),
    Get(String),
    Clear,
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("é\"\\n".to_owned()),
        "[a-d]{1,3}"
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!({"nested": [1, 2, {"x": null}]})),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => key().prop_map(Op::Remove),
        2 => key().prop_map(Op::Get),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    #[test]
    fn patched_data_matches_a_plain_map(
        start in prop::collection::btree_map(key(), value(), 0..5),
        ops in prop::collection::vec(op(), 0..12),
    ) {
        let mut model: Map<String, Value> = start.into_iter().collect();
        let mut state = arrived(&model);
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    let changed = state.insert(&k, &v).unwrap();
                    prop_assert_eq!(changed, model.get(&k) != Some(&v));
                    model.insert(k, v);
                }
                Op::Remove(k) => {
                    prop_assert_eq!(state.remove(&k).unwrap(), model.remove(&k));
                }
                Op::Get(k) => {
                    prop_assert_eq!(state.get::<Value>(&k).unwrap(), model.get(&k).cloned());
                    prop_assert_eq!(state.contains(&k).unwrap(), model.contains_key(&k));
                }
                Op::Clear => {
                    state.clear();
                    model.clear();
                }
            }
            prop_assert_eq!(state.is_empty(), model.is_empty());
        }
        // What a token carries afterwards is exactly the model.
        let mut back = reopened(&state);
        prop_assert_eq!(back.data().unwrap(), &model);
    }
}

#[test]
fn typed_get_reads_one_key_and_refuses_the_wrong_type() {
    let mut m = Map::new();
    m.insert("n".into(), json!("seven"));
    m.insert("views".into(), json!(3));
    let state = arrived(&m);
    assert_eq!(state.get::<u64>("views").unwrap(), Some(3));
    assert!(state.get::<u64>("n").is_err(), "a string is not a u64");
    assert_eq!(state.get::<u64>("missing").unwrap(), None);
}
