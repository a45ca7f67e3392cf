//! No lost updates in store mode: concurrent requests of one session, through the
//! middleware, against any `Store`. Run by each store's own test file.
//!
//! The handlers wait at a barrier after the middleware has loaded the session and before
//! they change it, so every request of a round loads the same record before any writes:
//! each round is a real race, whatever order the writes then come in.
//!
//! Use from a test file with `mod common { pub mod lost_updates; }` and `mod http;`.

#![allow(dead_code)]

use std::sync::Arc;

use sealed_session::store::Store;
use sealed_session::{Keyring, SealedSession, Session, SessionError};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::http::app::{Adapter, App, Client, Req, RespExt, Routes};

/// Requests in the round that sets different keys.
const WRITERS: usize = 6;

/// The keys the dump shows.
const KEYS: [&str; 9] = ["k0", "k1", "k2", "k3", "k4", "k5", "cart", "gone", "user"];

async fn dump(s: Session) -> Result<String, SessionError> {
    let mut out = serde_json::Map::new();
    for k in KEYS {
        if let Some(v) = s.get::<Value>(k)? {
            out.insert(k.to_owned(), v);
        }
    }
    Ok(Value::Object(out).to_string())
}

fn routes(barrier: &Arc<Barrier>) -> Routes {
    let (b1, b2, b3, b4) = (
        barrier.clone(),
        barrier.clone(),
        barrier.clone(),
        barrier.clone(),
    );
    Routes::new()
        .post(
            "/login",
            |s: &Session| -> Result<&'static str, SessionError> {
                s.insert("user", "alice")?;
                s.insert("gone", &true)?;
                Ok("ok")
            },
        )
        .get("/dump", dump)
        .post("/set/:k", move |r: Req| {
            let b = b1.clone();
            async move {
                b.wait().await;
                let k: String = r.param("k");
                r.session.insert(&k, &format!("by {k}"))?;
                Ok::<_, SessionError>("ok")
            }
        })
        .post("/cart/:name", move |r: Req| {
            let b = b2.clone();
            async move {
                b.wait().await;
                let name: String = r.param("name");
                let items: Vec<String> = (1..=3).map(|i| format!("{name}{i}")).collect();
                r.session.insert("cart", &items)?;
                Ok::<_, SessionError>("ok")
            }
        })
        .post("/remove-gone", move |s: Session| {
            let b = b3.clone();
            async move {
                b.wait().await;
                s.remove("gone")?;
                Ok::<_, SessionError>("ok")
            }
        })
        .post("/logout", move |s: Session| {
            let b = b4.clone();
            async move {
                b.wait().await;
                s.destroy()?;
                Ok::<_, SessionError>("ok")
            }
        })
}

fn app<S: Store + Clone>(on: Adapter, store: &S, parties: usize) -> App {
    let ring = Keyring::from_secret("lost-updates test secret of at least 32 bytes").unwrap();
    let barrier = Arc::new(Barrier::new(parties));
    on.app(
        &routes(&barrier),
        SealedSession::server_store(store.clone(), ring),
    )
}

/// Signs in on a fresh app; the client holding the session's cookie.
async fn signed_in<S: Store + Clone>(on: Adapter, store: &S, parties: usize) -> Client {
    let mut c = Client::new(app(on, store, parties));
    assert_eq!(c.text_ok(true, "/login").await, "ok");
    c
}

/// The session's data as the next request sees it.
async fn data(c: &mut Client) -> Value {
    serde_json::from_str(&c.text_ok(false, "/dump").await).unwrap()
}

/// Every race, on `store`, `rounds` times each.
pub async fn no_lost_updates<S: Store + Clone>(on: Adapter, store: &S, rounds: usize) {
    for _ in 0..rounds {
        different_keys_are_all_kept(on, store).await;
        the_same_key_ends_with_one_value_whole(on, store).await;
        a_removal_and_a_change_are_both_kept(on, store).await;
        a_logout_is_never_undone(on, store).await;
    }
}

/// `WRITERS` requests each set a key of their own: every key is there afterwards.
pub async fn different_keys_are_all_kept<S: Store + Clone>(on: Adapter, store: &S) {
    let mut c = signed_in(on, store, WRITERS).await;
    let cookie = c.jar.header();
    let sends: Vec<_> = (0..WRITERS)
        .map(|i| tokio::spawn(c.send_with(true, &format!("/set/k{i}"), cookie.clone())))
        .collect();
    for send in sends {
        send.await.unwrap().assert_status_is_ok();
    }
    let d = data(&mut c).await;
    for i in 0..WRITERS {
        assert_eq!(
            d[format!("k{i}")],
            json!(format!("by k{i}")),
            "k{i} lost: {d}"
        );
    }
    assert_eq!(d["user"], json!("alice"), "{d}");
}

/// Two requests set the same key to different arrays: it ends as one of them, whole.
pub async fn the_same_key_ends_with_one_value_whole<S: Store + Clone>(on: Adapter, store: &S) {
    let mut c = signed_in(on, store, 2).await;
    let cookie = c.jar.header();
    let (x, y) = tokio::join!(
        c.send_with(true, "/cart/x", cookie.clone()),
        c.send_with(true, "/cart/y", cookie.clone()),
    );
    x.assert_status_is_ok();
    y.assert_status_is_ok();
    let d = data(&mut c).await;
    assert!(
        d["cart"] == json!(["x1", "x2", "x3"]) || d["cart"] == json!(["y1", "y2", "y3"]),
        "one request's cart, not a mix: {d}"
    );
    assert_eq!(d["user"], json!("alice"), "{d}");
}

/// One request removes a key while another sets a different one: the key stays removed and
/// the other is set.
pub async fn a_removal_and_a_change_are_both_kept<S: Store + Clone>(on: Adapter, store: &S) {
    let mut c = signed_in(on, store, 2).await;
    let cookie = c.jar.header();
    let (r, s) = tokio::join!(
        c.send_with(true, "/remove-gone", cookie.clone()),
        c.send_with(true, "/set/k0", cookie.clone()),
    );
    r.assert_status_is_ok();
    s.assert_status_is_ok();
    let d = data(&mut c).await;
    assert_eq!(d.get("gone"), None, "removed key came back: {d}");
    assert_eq!(d["k0"], json!("by k0"), "{d}");
}

/// One request logs out while another changes the session: the session stays ended, and
/// its cookie opens nothing.
pub async fn a_logout_is_never_undone<S: Store + Clone>(on: Adapter, store: &S) {
    let c = signed_in(on, store, 2).await;
    let cookie = c.jar.header();
    let (out, set) = tokio::join!(
        c.send_with(true, "/logout", cookie.clone()),
        c.send_with(true, "/set/k1", cookie.clone()),
    );
    out.assert_status_is_ok();
    // The change fails or is dropped; either way nothing of the session comes back.
    assert!(set.status().is_success(), "{}", set.status());
    let resp = c.send_with(false, "/dump", cookie).await;
    resp.assert_status_is_ok();
    assert_eq!(resp.into_body(), "{}", "a logged-out session came back");
}
